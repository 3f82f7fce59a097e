"""WebmDemuxer against FFmpeg's Matroska demuxer, on a hand-built recorder-style stream, on broken input."""

import numpy as np
import pytest

from voxbus.transcoder.containers import ContainerError, OggDemuxer, WebmDemuxer
from voxbus.transcoder.containers import matroska_ids as ids

from .builders import block_payload, ebml_header, element, track_entry, uint
from .media import CHUNK_SIZES, Sample, chunks, decode, feed_in_chunks

WEBM_FILES = ("webm_opus", "webm_vorbis", "webm_opus_live")
AUDIO_TRACK = 2


def demux(data: bytes, size: int = 4096) -> tuple[WebmDemuxer, list[bytes]]:
    demuxer = WebmDemuxer()
    frames = feed_in_chunks(demuxer.feed, data, size)
    frames += demuxer.end()
    return demuxer, frames


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("name", WEBM_FILES)
def test_frames_match_ffmpeg_in_any_chunking(name: str, size: int, request: pytest.FixtureRequest) -> None:
    sample: Sample = request.getfixturevalue(name)
    demuxer, frames = demux(sample.data, size)
    assert frames == list(sample.ref.packets)
    assert demuxer.truncated is False
    assert demuxer.buffered == 0
    info = demuxer.info
    assert info is not None
    assert (info.sample_rate, info.channels, info.pre_skip, info.extradata) == (
        sample.ref.sample_rate,
        sample.ref.channels,
        sample.ref.delay,  # from CodecDelay, at 48 kHz for Opus and at the track's rate for Vorbis
        sample.ref.extradata,
    )


def test_live_output_has_an_unknown_size_segment(webm_opus_live: Sample) -> None:
    segment = webm_opus_live.data.index(ids.SEGMENT.to_bytes(4, "big"))
    assert webm_opus_live.data[segment + 4 : segment + 12] == b"\x01" + b"\xff" * 7


@pytest.mark.parametrize("name", ["webm_opus", "webm_vorbis"])
def test_extradata_decodes_and_discard_padding_trims_like_ffmpeg(
    name: str, request: pytest.FixtureRequest
) -> None:
    sample: Sample = request.getfixturevalue(name)
    demuxer, frames = demux(sample.data, 333)
    assert demuxer.info is not None
    pcm = decode(demuxer.info.codec, demuxer.info.extradata, frames)
    assert np.array_equal(pcm, decode(demuxer.info.codec, sample.ref.extradata, sample.ref.packets))
    # FFmpeg drops the last block's DiscardPadding when it demuxes; a bare decoder does not.
    assert demuxer.discard_padding > 0
    assert pcm.shape[0] - demuxer.discard_padding == sample.ref.decoded_samples


def opus_head(sample: Sample) -> bytes:
    demuxer = OggDemuxer()
    demuxer.feed(sample.data)
    assert demuxer.info is not None
    return demuxer.info.extradata


def frame(n: int, size: int) -> bytes:
    return bytes([n % 256]) * size


def recorder_stream(head: bytes, *, codec_delay_ns: int = 0) -> tuple[bytes, list[bytes]]:
    """What a browser's MediaRecorder writes, more or less: unknown-size Segment and Clusters, a video
    track beside the audio one, blocks of every lacing, then a large Cues that ends the last Cluster."""
    tracks = element(
        ids.TRACKS,
        track_entry(1, "V_VP8", track_type=1)
        + track_entry(AUDIO_TRACK, "A_OPUS", codec_private=head, codec_delay_ns=codec_delay_ns),
    )
    laced = {
        "none": [frame(1, 120)],
        "xiph": [frame(2, 300), frame(3, 255), frame(4, 10)],
        "fixed": [frame(5, 90)] * 4,
        "ebml": [frame(6, 800), frame(7, 500), frame(8, 1000), frame(9, 3)],
    }
    cluster1 = element(ids.TIMECODE, b"\x00")
    cluster1 += element(ids.SIMPLE_BLOCK, block_payload(1, [frame(0, 100_000)]))  # a video keyframe
    for lacing, frames in laced.items():
        cluster1 += element(ids.SIMPLE_BLOCK, block_payload(AUDIO_TRACK, frames, lacing=lacing))
    cluster1 += element(ids.VOID, bytes(5000))
    last = frame(10, 77)
    cluster2 = element(ids.TIMECODE, b"\x10") + element(
        ids.BLOCK_GROUP,
        element(ids.BLOCK, block_payload(AUDIO_TRACK, [last])) + uint(ids.DISCARD_PADDING, 2_500_000),
    )
    data = (
        ebml_header()
        + element(ids.SEGMENT, unknown_size=True)
        + element(ids.INFO, uint(0x2AD7B1, 1_000_000))
        + tracks
        + element(ids.CLUSTER, unknown_size=True)
        + cluster1
        + element(ids.CLUSTER, unknown_size=True)
        + cluster2
        + element(ids.CUES, bytes(200_000))
        + element(ids.TAGS, b"")
    )
    return data, [f for frames in laced.values() for f in frames] + [last]


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_recorder_style_stream(size: int, ogg_opus_stereo: Sample) -> None:
    data, expected = recorder_stream(opus_head(ogg_opus_stereo), codec_delay_ns=10_000_000)
    demuxer = WebmDemuxer()
    frames: list[bytes] = []
    most_buffered = 0
    for chunk in chunks(data, size):
        frames += demuxer.feed(chunk)
        most_buffered = max(most_buffered, demuxer.buffered)
    frames += demuxer.end()
    assert frames == expected
    assert demuxer.truncated is False
    # The 100 kB video block and the 200 kB Cues went by without being held whole.
    assert most_buffered < size + 5000
    info = demuxer.info
    assert info is not None
    assert (info.codec, info.sample_rate, info.channels) == ("opus", 48000, 2)
    assert info.pre_skip == 480  # CodecDelay 10 ms at 48 kHz wins over OpusHead's 312
    assert demuxer.discard_padding == 120  # 2.5 ms at 48 kHz


def test_pre_skip_from_opus_head_without_codec_delay(ogg_opus_stereo: Sample) -> None:
    demuxer, _ = demux(recorder_stream(opus_head(ogg_opus_stereo))[0])
    assert demuxer.info is not None
    assert demuxer.info.pre_skip == 312


def test_garbage_inside_a_cluster(webm_opus: Sample) -> None:
    data = webm_opus.data
    timecode = data.index(ids.CLUSTER.to_bytes(4, "big")) + 7  # the Cluster's 3-byte size, then Timecode
    assert data[timecode] == ids.TIMECODE
    garbage_at = timecode + 3
    broken = data[:garbage_at] + b"garbage!" + data[garbage_at:]
    with pytest.raises(
        ContainerError, match=f"unexpected element 0x6761 inside a Cluster at byte {garbage_at}"
    ):
        demux(broken, 333)


def test_zero_bytes_inside_a_cluster(webm_opus: Sample) -> None:
    data = webm_opus.data
    at = data.index(ids.CLUSTER.to_bytes(4, "big")) + 10
    with pytest.raises(ContainerError, match=f"invalid EBML element id .* at byte {at}"):
        demux(data[:at] + bytes(16) + data[at:])


def test_bad_magic_fails_at_once() -> None:
    with pytest.raises(ContainerError, match="bad EBML magic b'O' at byte 0"):
        WebmDemuxer().feed(b"O")


def test_unsupported_doc_type() -> None:
    with pytest.raises(ContainerError, match="unsupported EBML DocType 'mka2'"):
        WebmDemuxer().feed(ebml_header("mka2"))


@pytest.mark.parametrize("cut", [0.3, 0.999])
def test_truncated_stream_is_reported_not_raised(cut: float, webm_opus: Sample) -> None:
    demuxer, frames = demux(webm_opus.data[: int(len(webm_opus.data) * cut)], 333)
    assert demuxer.truncated is True
    assert frames == list(webm_opus.ref.packets[: len(frames)])


def test_unsupported_codec() -> None:
    data = ebml_header() + element(ids.SEGMENT, element(ids.TRACKS, track_entry(1, "A_AAC")))
    with pytest.raises(ContainerError, match="unsupported Matroska codec 'A_AAC' in the TrackEntry at byte"):
        demux(data)


def test_no_audio_track() -> None:
    data = ebml_header() + element(ids.SEGMENT, element(ids.TRACKS, track_entry(1, "V_VP8", track_type=1)))
    with pytest.raises(ContainerError, match="no audio track in the Tracks at byte"):
        demux(data)


def test_unknown_size_is_only_for_segment_and_cluster() -> None:
    data = ebml_header() + element(ids.SEGMENT, unknown_size=True) + element(ids.TRACKS, unknown_size=True)
    with pytest.raises(ContainerError, match=r"element 0x1654ae6b at byte \d+ has an unknown size"):
        demux(data)


def test_child_overrunning_its_parent() -> None:
    tracks = element(ids.TRACKS, track_entry(1, "A_OPUS"))
    data = ebml_header() + element(ids.SEGMENT, tracks[:-3]) + tracks[-3:]
    with pytest.raises(ContainerError, match="overruns its parent"):
        demux(data)


def test_empty_element_at_the_very_end() -> None:
    entry = uint(ids.TRACK_NUMBER, 1) + uint(ids.TRACK_TYPE, 2) + element(ids.CODEC_ID, b"A_OPUS")
    data = ebml_header() + element(
        ids.SEGMENT, element(ids.TRACKS, element(ids.TRACK_ENTRY, entry + element(0x6264)))
    )
    for size in (1, len(data)):
        demuxer, frames = demux(data, size)
        assert (frames, demuxer.truncated) == ([], False)
        assert demuxer.info is not None
        assert (demuxer.info.codec, demuxer.info.channels, demuxer.info.pre_skip) == ("opus", 1, 0)


def test_block_too_short_for_its_header(ogg_opus_stereo: Sample) -> None:
    data, _ = recorder_stream(opus_head(ogg_opus_stereo))
    cluster = data.index(ids.CLUSTER.to_bytes(4, "big")) + 12
    broken = data[:cluster] + element(ids.SIMPLE_BLOCK, b"\x82\x00") + data[cluster:]
    with pytest.raises(ContainerError, match=f"block at byte {cluster} is too short for its header"):
        demux(broken, 1)
