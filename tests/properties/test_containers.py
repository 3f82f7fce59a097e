"""What a client notices of the transcoder, whatever it sends as Ogg, WebM, FLAC, ADTS (AAC) or MP3.

- A valid stream is recorded as the same audio however it was cut into chunks: one byte at a
  time (a cut at every byte boundary), cut once at every offset of its first KiB, or cut at random.
- A damaged stream (bytes flipped, deleted, inserted, repeated, the end cut off) either decodes
  or ends the session with a `DecodeError` whose message says why; no other exception, no hang,
  and never more audio than the documented bound per byte received.
- voxbus's own demuxers (Ogg, WebM, FLAC) give the same verdict and the same packets whatever
  the chunking, refuse only with `ContainerError`, and never give more packet bytes than came in.
"""

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.properties.budget import examples
from tests.properties.streams import CONTAINERS, STREAMS, cuts, damaged, pieces, record, stream
from voxbus.transcoder.containers import ContainerError, FlacStream, OggDemuxer, WebmDemuxer

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
@examples(25)
@given(data=st.data())
def test_any_chunking_gives_the_same_audio(name: str, data: st.DataObject) -> None:
    source = stream(name)
    chunks = pieces(source.data, data.draw(cuts(len(source.data)), label="cuts"))
    assert record(source, chunks) == record(source, [source.data])


@pytest.mark.parametrize("name", STREAMS)
@examples(60)
@given(data=st.data())
def test_a_damaged_stream_decodes_or_is_refused_with_a_reason(name: str, data: st.DataObject) -> None:
    source = stream(name)
    broken = data.draw(damaged(source.data), label="damaged")
    record(source, pieces(broken, data.draw(cuts(len(broken)), label="cuts")))


# -- voxbus's own demuxers ----------------------------------------------------------------------


def _demuxer(name: str) -> Callable[[], Any]:
    if name.startswith("ogg"):
        return OggDemuxer
    if name.startswith("webm"):
        return WebmDemuxer
    return FlacStream


def demux(name: str, chunks: Sequence[bytes]) -> tuple[object, ...]:
    """The demuxer's verdict on `chunks`: the packets (FLAC: the frame bytes), the stream's
    description and whether it was cut short; or that it refused them."""
    demuxer = _demuxer(name)()
    out: list[bytes] = []
    received = 0
    try:
        for chunk in chunks:
            received += len(chunk)
            fed = demuxer.feed(chunk)
            out += [fed] if isinstance(fed, bytes) else fed
            assert sum(map(len, out)) <= received, "more packet bytes than came in"
        demuxer.end()
    except ContainerError as exc:
        assert str(exc).strip(), "a ContainerError without a reason"
        return ("refused",)
    # FLAC's frame bytes come as they arrive (their cuts are the chunks'); packets are packets
    taken = (b"".join(out),) if isinstance(demuxer, FlacStream) else tuple(out)
    return ("taken", taken, demuxer.info, demuxer.truncated)


@pytest.mark.parametrize("name", CONTAINERS)
@examples(150)
@given(data=st.data())
def test_a_demuxer_s_verdict_does_not_depend_on_the_chunking(name: str, data: st.DataObject) -> None:
    source = stream(name)
    broken = data.draw(st.one_of(st.just(source.data), damaged(source.data)), label="stream")
    chunked = demux(name, pieces(broken, data.draw(cuts(len(broken)), label="cuts")))
    assert chunked == demux(name, [broken])
