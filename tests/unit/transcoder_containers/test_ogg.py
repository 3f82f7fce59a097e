"""OggDemuxer against FFmpeg's Ogg demuxer, on hand-built page layouts, and on broken input."""

import numpy as np
import pytest

from voxbus.transcoder.containers import ContainerError, OggDemuxer
from voxbus.transcoder.containers.xiph import xiph_unlace

from .builders import ogg_page, ogg_stream
from .media import CHUNK_SIZES, SECONDS, Sample, decode, feed_in_chunks

OGG_FILES = ("ogg_opus_mono", "ogg_opus_stereo", "ogg_vorbis")


def demux(data: bytes, size: int = 4096) -> tuple[OggDemuxer, list[bytes]]:
    demuxer = OggDemuxer()
    packets = feed_in_chunks(demuxer.feed, data, size)
    packets += demuxer.end()
    return demuxer, packets


def opus_headers(sample: Sample) -> tuple[bytes, bytes]:
    """OpusHead and OpusTags of a real file, for hand-built streams."""
    demuxer = OggDemuxer()
    demuxer.feed(sample.data)
    assert demuxer.info is not None
    return demuxer.info.extradata, b"OpusTags" + bytes(8)


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("name", OGG_FILES)
def test_packets_match_ffmpeg_in_any_chunking(name: str, size: int, request: pytest.FixtureRequest) -> None:
    sample: Sample = request.getfixturevalue(name)
    demuxer, packets = demux(sample.data, size)
    assert packets == list(sample.ref.packets)
    assert demuxer.truncated is False
    assert demuxer.buffered == 0
    info = demuxer.info
    assert info is not None
    assert (info.sample_rate, info.channels, info.pre_skip) == (
        sample.ref.sample_rate,
        sample.ref.channels,
        sample.ref.delay,
    )


@pytest.mark.parametrize("name", ["ogg_opus_mono", "ogg_opus_stereo"])
def test_opus_info_and_end_trimming(name: str, request: pytest.FixtureRequest) -> None:
    sample: Sample = request.getfixturevalue(name)
    demuxer, packets = demux(sample.data)
    info = demuxer.info
    assert info is not None
    assert info.codec == "opus"
    assert info.extradata == sample.ref.extradata  # the OpusHead packet
    assert info.pre_skip == 312  # libopus' lookahead at 48 kHz
    assert demuxer.last_granule is not None
    assert demuxer.last_granule - info.pre_skip == SECONDS * 48000 == sample.ref.decoded_samples
    # FFmpeg's Opus decoder drops pre_skip itself (read from the OpusHead extradata); the end is trimmed
    # by the caller, from the last granule position.
    pcm = decode("opus", info.extradata, packets)
    assert pcm.shape[0] - (len(packets) * 960 - demuxer.last_granule) == sample.ref.decoded_samples


def test_opus_states_its_input_rate_and_decodes_at_48k(ogg_opus_24k: Sample) -> None:
    demuxer, _ = demux(ogg_opus_24k.data)
    assert demuxer.info is not None
    assert demuxer.info.sample_rate == 24000  # OpusHead's input sample rate
    assert demuxer.info.output_rate == 48000 == ogg_opus_24k.ref.sample_rate


def test_vorbis_extradata_decodes_like_ffmpeg(ogg_vorbis: Sample) -> None:
    demuxer, packets = demux(ogg_vorbis.data, 333)
    info = demuxer.info
    assert info is not None
    assert info.codec == "vorbis"
    assert (info.sample_rate, info.channels) == (44100, 2)
    ours = xiph_unlace(info.extradata, 0)
    ffmpegs = xiph_unlace(ogg_vorbis.ref.extradata, 0)
    # FFmpeg drops the comments from the comment header it puts in extradata; the rest is the same.
    assert (ours[0], ours[2]) == (ffmpegs[0], ffmpegs[2])
    assert ours[1].startswith(b"\x03vorbis")
    pcm = decode("vorbis", info.extradata, packets)
    assert np.array_equal(pcm, decode("vorbis", ogg_vorbis.ref.extradata, ogg_vorbis.ref.packets))
    # FFmpeg's demuxer trims the end to the last granule position; with that, the counts agree.
    assert demuxer.last_granule == ogg_vorbis.ref.decoded_samples


@pytest.mark.parametrize("segments_per_page", [1, 3, 255])
def test_packets_spanning_pages(segments_per_page: int, ogg_opus_mono: Sample) -> None:
    head, tags = opus_headers(ogg_opus_mono)
    audio = [
        bytes([n % 251]) * size for n, size in enumerate([1, 254, 255, 256, 510, 600, 1000, 4000, 70000, 7])
    ]
    data = ogg_stream([head, tags, *audio], segments_per_page=segments_per_page)
    for size in (1, 333, 65536):
        demuxer, packets = demux(data, size)
        assert packets == audio
        assert demuxer.truncated is False
        assert demuxer.last_granule == (2 + len(audio)) * 960


def test_other_logical_streams_are_skipped(ogg_opus_mono: Sample) -> None:
    theora_bos = ogg_page([b"\x80theora" + bytes(34)], serial=99, sequence=0, flags=0x02)
    other_data = ogg_page([b"not audio"], serial=99, sequence=1)
    data = ogg_opus_mono.data
    middle = data.index(b"OggS", len(data) // 2)
    demuxer, packets = demux(theora_bos + data[:middle] + other_data + data[middle:])
    assert packets == list(ogg_opus_mono.ref.packets)
    assert demuxer.truncated is False


def test_bad_capture_pattern_fails_at_once() -> None:
    with pytest.raises(ContainerError, match=r"bad Ogg capture pattern b'R' at byte 0"):
        OggDemuxer().feed(b"R")


def test_bad_capture_pattern_after_a_page_names_its_offset(ogg_opus_mono: Sample) -> None:
    first_page_end = ogg_opus_mono.data.index(b"OggS", 1)
    demuxer = OggDemuxer()
    with pytest.raises(ContainerError, match=f"capture pattern .* at byte {first_page_end}"):
        demuxer.feed(ogg_opus_mono.data[:first_page_end] + b"RIFF....")


def test_corrupted_byte_fails_the_crc(ogg_opus_stereo: Sample) -> None:
    data = bytearray(ogg_opus_stereo.data)
    third_page = data.index(b"OggS", data.index(b"OggS", 1) + 1)
    data[third_page + 100] ^= 0x40
    demuxer = OggDemuxer()
    with pytest.raises(ContainerError, match=f"CRC mismatch at byte {third_page}"):
        feed_in_chunks(demuxer.feed, bytes(data), 333)


@pytest.mark.parametrize("cut", [0.5, 0.999])
def test_truncated_stream_is_reported_not_raised(cut: float, ogg_opus_stereo: Sample) -> None:
    data = ogg_opus_stereo.data[: int(len(ogg_opus_stereo.data) * cut)]
    demuxer, packets = demux(data, 333)
    assert demuxer.truncated is True
    assert packets == list(ogg_opus_stereo.ref.packets[: len(packets)])


def test_stream_cut_at_a_page_boundary_is_truncated(ogg_opus_stereo: Sample) -> None:
    data = ogg_opus_stereo.data
    demuxer, _ = demux(data[: data.rindex(b"OggS")])  # every page but the EOS one
    assert demuxer.truncated is True


def test_missing_page_is_an_error(ogg_opus_mono: Sample) -> None:
    data = ogg_opus_mono.data
    third = data.index(b"OggS", data.index(b"OggS", 1) + 1)
    fourth = data.index(b"OggS", third + 1)
    with pytest.raises(ContainerError, match=r"sequence number \d+, expected \d+: pages are missing"):
        demux(data[:third] + data[fourth:])


def test_unknown_codec_is_refused() -> None:
    speex = ogg_page([b"Speex   1.2" + bytes(69)], serial=5, sequence=0, flags=0x02)
    with pytest.raises(ContainerError, match=r"unsupported Ogg codec b'Speex   ' in the page at byte 0"):
        OggDemuxer().feed(speex)


def test_stream_must_begin_with_a_bos_page() -> None:
    with pytest.raises(ContainerError, match="precedes any Opus or Vorbis stream"):
        OggDemuxer().feed(ogg_page([b"OpusHead"], serial=5, sequence=0))


def test_wrong_second_header_is_refused(ogg_opus_mono: Sample) -> None:
    head, _ = opus_headers(ogg_opus_mono)
    with pytest.raises(ContainerError, match="expected header packet b'OpusTags'"):
        demux(ogg_stream([head, b"NotTags!", b"audio"]))


def test_feed_after_end_is_a_usage_error() -> None:
    demuxer = OggDemuxer()
    demuxer.end()
    with pytest.raises(RuntimeError):
        demuxer.feed(b"OggS")
