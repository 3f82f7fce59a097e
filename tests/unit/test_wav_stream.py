"""WAV streams as clients really send them: headers whose data size is wrong, metadata after the
audio, garbage after "RIFF…WAVE", float samples that are NaN or infinite. Nothing a client sent
as audio is dropped without a reason, and nothing that is not a WAV stream ends without one."""

import struct

import numpy as np
import numpy.typing as npt
import pytest

from tests.audio import tone_and_noise
from voxbus.transcoder.decoders import DecodeError
from voxbus.transcoder.pipeline import SessionPipeline
from voxbus.transcoder.samples import to_int16

RATE = 16000


def chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


def wav(
    audio: bytes,
    *,
    data_size: int | None = None,
    tag: int = 1,
    bits: int = 16,
    channels: int = 1,
    rate: int = RATE,
    after: bytes = b"",
) -> bytes:
    """A RIFF/WAVE stream whose data chunk header says `data_size` (default: the truth)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    size = len(audio) if data_size is None else data_size
    body = b"WAVE" + chunk(b"fmt ", fmt) + b"data" + struct.pack("<I", size) + audio + after
    return b"RIFF" + struct.pack("<I", len(body)) + body


def run(chunks: list[bytes], *, rate: int = RATE) -> npt.NDArray[np.int16]:
    pipeline = SessionPipeline.for_codec("wav", rate=rate, channels=1)
    out = b"".join(pipeline.push(c) for c in chunks) + pipeline.finish()
    return np.frombuffer(out, dtype=np.int16)


def splits(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


SOURCE = tone_and_noise(1.0, RATE).reshape(-1)
SIZES = [1, 7, 333, 4096, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("declared", [10, 1000, 2])
def test_audio_past_a_short_data_size_is_recorded(size: int, declared: int) -> None:
    stream = wav(SOURCE.tobytes(), data_size=declared)
    np.testing.assert_array_equal(run(splits(stream, size)), SOURCE)


@pytest.mark.parametrize("size", SIZES)
def test_metadata_after_the_audio_is_not_audio(size: int) -> None:
    info = chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"voxb\x00\x00")
    stream = wav(SOURCE.tobytes(), after=info + chunk(b"id3 ", b"ID3" + bytes(40)))
    np.testing.assert_array_equal(run(splits(stream, size)), SOURCE)


def test_an_odd_data_chunk_is_padded_before_the_metadata() -> None:
    samples = np.arange(101, dtype=np.uint8)  # 8-bit mono: 101 bytes, then a pad byte
    stream = wav(samples.tobytes() + b"\x00", data_size=101, bits=8, after=chunk(b"LIST", b"INFO"))
    expected = ((samples.astype(np.int16) - 128) << 8).astype(np.int16)
    for size in (1, 2, 101, len(stream)):
        np.testing.assert_array_equal(run(splits(stream, size)), expected)


def test_a_few_bytes_past_a_short_data_size_are_audio_too() -> None:
    short = SOURCE[:8]
    np.testing.assert_array_equal(run([wav(short.tobytes(), data_size=4)]), short)


def test_garbage_after_the_metadata_fails_with_a_reason() -> None:
    stream = wav(SOURCE.tobytes(), after=chunk(b"LIST", b"INFO") + bytes(range(200)))
    with pytest.raises(DecodeError, match="neither audio nor a RIFF chunk"):
        run(splits(stream, 4096))


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"RIFF\x00\x00\x00\x00WAVE" + bytes(range(256)) * 4, r"no RIFF chunk at byte 12 \(found b'\\x00"),
        (b"RIFF\xff\xff\xff\xffWAVE" + b"hello, this is not audio" * 40, "'hell' chunk of .* bytes"),
        (
            b"RIFF\x00\x00\x00\x00WAVE" + chunk(b"JUNK", bytes(30)),
            r"no WAV 'fmt ' and 'data' chunks in the 50",
        ),
        (wav(b"")[:36], "no WAV 'data' chunk in the 36 bytes"),
        (b"RIFF\x00\x00", "ended inside the WAV's RIFF header"),
    ],
    ids=["binary", "text", "no-fmt", "no-data", "cut-header"],
)
def test_riff_wave_followed_by_garbage_fails_with_a_reason(stream: bytes, reason: str) -> None:
    for size in (1, 4096):
        with pytest.raises(DecodeError, match=reason):
            run(splits(stream, size))


def test_an_empty_stream_is_an_empty_recording() -> None:
    assert len(run([])) == 0


@pytest.mark.parametrize(("bits", "dtype"), [(32, "<f4"), (64, "<f8")])
def test_nan_is_silence_and_inf_full_scale_without_a_warning(bits: int, dtype: str) -> None:
    # pytest turns warnings into errors: numpy's "invalid value encountered in cast" would raise
    signal = (SOURCE / 32768.0).astype(dtype)
    signal[100:200] = np.nan
    signal[300], signal[301], signal[302] = np.inf, -np.inf, 1e300 if bits == 64 else 1e38
    clean = signal.copy()
    clean[100:200] = 0.0
    clean[300], clean[301], clean[302] = 1.0, -1.0, 1.0
    for rate in (RATE, 8000):  # as it is, and through the resampler
        got = run(splits(wav(signal.tobytes(), tag=3, bits=bits), 4096), rate=rate)
        expected = run([wav(clean.tobytes(), tag=3, bits=bits)], rate=rate)
        np.testing.assert_array_equal(got, expected)
        assert np.abs(got.astype(np.int32)).mean() > 1000  # not silence


def test_to_int16_takes_nan_as_silence() -> None:
    block = np.array([[np.nan], [0.5], [np.inf], [-np.inf]], dtype=np.float32)
    np.testing.assert_array_equal(to_int16(block).reshape(-1), [0, 16384, 32767, -32768])


def test_no_take_over_point_while_deciding_what_follows_the_data() -> None:
    pipeline = SessionPipeline.for_codec("wav", rate=RATE, channels=1)
    stream = wav(SOURCE[:100].tobytes(), data_size=20)
    pipeline.push(stream[: 44 + 20 + 4])  # the declared data, and 4 bytes past it
    assert not pipeline.stateless_here
    pipeline.push(stream[44 + 20 + 4 :])
    assert pipeline.stateless_here
