"""One test per defect the properties or the fuzzer found, each the smallest input that showed it.

Each failed before its fix (an exception other than the parser's own, or a reply that could not
be sent); docs/security.md ("Bad input") lists them.
"""

import math

import pytest

from tests.properties.streams import vorbis_headers
from tests.unit.transcoder_containers.builders import block_payload, ebml_header, element, track_entry
from voxbus.transcoder.containers import ContainerError, WebmDemuxer
from voxbus.transcoder.containers import matroska_ids as ids
from voxbus.transcoder.containers.xiph import xiph_lace
from voxbus.transcoder.decoders import DecodeError
from voxbus.transcoder.pipeline import SessionPipeline


@pytest.mark.parametrize("rate", [math.nan, math.inf, -math.inf, 1e308])
def test_a_webm_sampling_frequency_that_is_no_rate_is_refused(rate: float) -> None:
    """Was ValueError or OverflowError (from round(), or CodecDelay at 1e308 Hz): the transcoder
    logged an unexpected failure instead of refusing the stream."""
    ident, comment, setup, _ = vorbis_headers()
    private = xiph_lace([ident, comment, setup])
    entry = track_entry(1, "A_VORBIS", rate=rate, codec_private=private, codec_delay_ns=1 << 63)
    data = ebml_header() + element(ids.SEGMENT, element(ids.TRACKS, entry))
    pipeline = SessionPipeline.for_codec("webm", rate=48000, channels=2)
    with pytest.raises(DecodeError, match="invalid SamplingFrequency or Channels in the TrackEntry"):
        pipeline.push(data)


def test_a_discard_padding_wider_than_8_bytes_is_refused() -> None:
    """Was OverflowError from `discard_padding` (a number too large for a float)."""
    group = element(ids.BLOCK, block_payload(1, [b"\xfc"])) + element(ids.DISCARD_PADDING, b"\x01" * 200)
    cluster = element(ids.TIMECODE, b"\x00") + element(ids.BLOCK_GROUP, group)
    data = ebml_header() + element(
        ids.SEGMENT, element(ids.TRACKS, track_entry(1, "A_OPUS")) + element(ids.CLUSTER, cluster)
    )
    with pytest.raises(ContainerError, match="signed integer element of 200 bytes"):
        WebmDemuxer().feed(data)
