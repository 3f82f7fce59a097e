"""What a client notices of the transcoder, whatever it sends as Ogg, WebM, FLAC, ADTS (AAC) or MP3.

- A valid stream is recorded as the same audio however it was cut into chunks: one byte at a
  time (a cut at every byte boundary), cut once at every offset of its first KiB, or cut at random.
- A damaged stream (bytes flipped, deleted, inserted, repeated, the end cut off) either decodes
  or ends the session with a `DecodeError` whose message says why; no other exception, no hang,
  and never more audio than the documented bound per byte received. Which of the two, and the
  audio recorded, do not depend on the chunking either.
- voxbus's own demuxers (Ogg, WebM, FLAC) give the same verdict and the same packets whatever
  the chunking, refuse only with `ContainerError`, and never give more packet bytes than came in.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.properties.budget import examples
from tests.properties.streams import CONTAINERS, STREAMS, cuts, damaged, demux, pieces, record, stream

HEADER_SPLITS = 1024  # the first bytes, where the parsers' states change most, cut at every offset


@pytest.mark.parametrize("name", STREAMS)
def test_a_valid_stream_decodes_to_audio(name: str) -> None:
    source = stream(name)
    whole = record(source, [source.data])
    assert whole.error is None
    assert len(whole.pcm) > 0.1 * source.rate * 2 * source.channels  # most of its 0.2 s


@pytest.mark.parametrize("name", STREAMS)
def test_one_byte_at_a_time_gives_the_same_audio(name: str) -> None:
    source = stream(name)
    one_by_one = record(source, [source.data[i : i + 1] for i in range(len(source.data))])
    assert one_by_one == record(source, [source.data])


@pytest.mark.parametrize("name", STREAMS)
def test_a_cut_at_any_offset_of_the_headers_gives_the_same_audio(name: str) -> None:
    source = stream(name)
    whole = record(source, [source.data])
    for cut in range(1, min(HEADER_SPLITS, len(source.data))):
        assert record(source, [source.data[:cut], source.data[cut:]]) == whole, f"cut at byte {cut}"


@pytest.mark.parametrize("name", STREAMS)
@examples(40)
@given(data=st.data())
def test_any_chunking_gives_the_same_audio(name: str, data: st.DataObject) -> None:
    source = stream(name)
    chunks = pieces(source.data, data.draw(cuts(len(source.data)), label="cuts"))
    assert record(source, chunks) == record(source, [source.data])


@pytest.mark.parametrize("name", STREAMS)
@examples(100)
@given(data=st.data())
def test_a_damaged_stream_gets_the_same_verdict_however_it_is_cut(name: str, data: st.DataObject) -> None:
    source = stream(name)
    broken = data.draw(damaged(source.data), label="damaged")
    chunked = record(source, pieces(broken, data.draw(cuts(len(broken)), label="cuts")))
    whole = record(source, [broken])
    assert (chunked.error is None) == (whole.error is None), (chunked.error, whole.error)
    if whole.error is None:
        assert chunked.pcm == whole.pcm


# -- voxbus's own demuxers ----------------------------------------------------------------------


@pytest.mark.parametrize("name", CONTAINERS)
@examples(150)
@given(data=st.data())
def test_a_demuxer_s_verdict_does_not_depend_on_the_chunking(name: str, data: st.DataObject) -> None:
    source = stream(name)
    broken = data.draw(st.one_of(st.just(source.data), damaged(source.data)), label="stream")
    kind = stream(name).codec
    chunked = demux(kind, pieces(broken, data.draw(cuts(len(broken)), label="cuts")))
    assert chunked == demux(kind, [broken])
