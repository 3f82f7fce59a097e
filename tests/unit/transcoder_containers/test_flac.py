"""FlacStream: STREAMINFO, frame bytes in any chunking, lossless decoding through FFmpeg, broken input."""

import numpy as np
import pytest

from voxbus.transcoder.containers import ContainerError, FlacStream

from .media import CHUNK_SIZES, Sample, chunks, parse_and_decode

FLAC_FILES = ("flac_16bit", "flac_24bit")


def frame_bytes(data: bytes, size: int) -> tuple[FlacStream, list[bytes]]:
    stream = FlacStream()
    pieces = [stream.feed(chunk) for chunk in chunks(data, size)]
    pieces.append(stream.end())
    return stream, pieces


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("name", FLAC_FILES)
def test_frames_follow_the_metadata_in_any_chunking(
    name: str, size: int, request: pytest.FixtureRequest
) -> None:
    sample: Sample = request.getfixturevalue(name)
    stream, pieces = frame_bytes(sample.data, size)
    # FFmpeg's FLAC demuxer cuts that same byte run into frames.
    assert b"".join(pieces) == b"".join(sample.ref.packets)
    assert stream.truncated is False
    assert stream.buffered == 0


@pytest.mark.parametrize(("name", "bits"), [("flac_16bit", 16), ("flac_24bit", 24)])
def test_streaminfo(name: str, bits: int, request: pytest.FixtureRequest) -> None:
    sample: Sample = request.getfixturevalue(name)
    stream, _ = frame_bytes(sample.data, 333)
    info = stream.info
    assert info is not None
    assert info.codec == "flac"
    assert (info.sample_rate, info.channels) == (sample.ref.sample_rate, sample.ref.channels)
    assert info.bits_per_sample == bits
    assert info.total_samples == sample.pcm.shape[0]
    assert info.extradata == sample.ref.extradata
    assert len(info.extradata) == 34


@pytest.mark.parametrize("name", FLAC_FILES)
def test_lossless_through_ffmpegs_parser_and_decoder(name: str, request: pytest.FixtureRequest) -> None:
    sample: Sample = request.getfixturevalue(name)
    stream, pieces = frame_bytes(sample.data, 4096)
    assert stream.info is not None
    pcm = parse_and_decode("flac", stream.info.extradata, pieces)
    assert pcm.dtype == sample.pcm.dtype
    assert np.array_equal(pcm, sample.pcm)


def test_large_metadata_blocks_are_skipped_as_they_arrive(flac_16bit: Sample) -> None:
    data = flac_16bit.data
    streaminfo = data[4:42]
    picture = bytes([0x06]) + (1_000_000).to_bytes(3, "big") + bytes(1_000_000)
    rest = data[42:]  # FFmpeg's own blocks (the last one flagged last), then the frames
    stream = FlacStream()
    pieces, most_buffered = [], 0
    for chunk in chunks(b"fLaC" + bytes([streaminfo[0] & 0x7F]) + streaminfo[1:] + picture + rest, 65536):
        pieces.append(stream.feed(chunk))
        most_buffered = max(most_buffered, stream.buffered)
    assert b"".join(pieces) == b"".join(flac_16bit.ref.packets)
    assert most_buffered < 64


def test_bad_magic_fails_at_once() -> None:
    with pytest.raises(ContainerError, match="not FLAC: bad magic b'ID' at byte 0"):
        FlacStream().feed(b"ID")


def test_streaminfo_must_come_first(flac_16bit: Sample) -> None:
    padding_first = b"fLaC" + b"\x01\x00\x00\x04" + bytes(4) + flac_16bit.data[4:]
    with pytest.raises(ContainerError, match="at byte 4: STREAMINFO must come first"):
        FlacStream().feed(padding_first)


def test_no_frame_after_the_metadata(flac_16bit: Sample) -> None:
    data = flac_16bit.data
    frames_at = len(data) - len(b"".join(flac_16bit.ref.packets))
    with pytest.raises(ContainerError, match=f"no FLAC frame sync code at byte {frames_at}"):
        FlacStream().feed(data[:frames_at] + b"\x00\x00" + data[frames_at:])


@pytest.mark.parametrize("cut", [3, 20, 100])
def test_truncated_metadata_is_reported_not_raised(cut: int, flac_16bit: Sample) -> None:
    stream, pieces = frame_bytes(flac_16bit.data[:cut], 1)
    assert stream.truncated is True
    assert b"".join(pieces) == b""
