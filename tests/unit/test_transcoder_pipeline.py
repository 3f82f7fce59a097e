"""Every input codec through one session's pipeline, in chunks of odd sizes, against a reference.

PCM, WAV, FLAC and G.711 must come out sample-exact; Opus exact against libopus decoding the
same packets; mp3, aac, Ogg and WebM at ≥ 40 dB SNR against FFmpeg decoding the whole file.
"""

import io

import av
import numpy as np
import numpy.typing as npt
import pytest
import soundfile
import soxr

from tests.audio import (
    aligned_snr_db,
    chunked,
    decode_file,
    encode,
    opus_packets,
    speech,
    tone_and_noise,
    wav_bytes,
)
from voxbus.transcoder.decoders import DecodeError
from voxbus.transcoder.pipeline import SessionPipeline
from voxbus.transcoder.samples import ALAW, MULAW, mix_channels, to_int16

CHUNK_SIZES = [1, 333, 4096, 65536]


def run(codec: str, chunks: list[bytes], *, rate: int, channels: int) -> npt.NDArray[np.int16]:
    pipeline = SessionPipeline.for_codec(codec, rate=rate, channels=channels)
    out = b"".join(pipeline.push(chunk) for chunk in chunks) + pipeline.finish()
    return np.frombuffer(out, dtype=np.int16).reshape(-1, channels)


@pytest.mark.parametrize("size", CHUNK_SIZES)
def test_pcm_passes_through_untouched(size: int) -> None:
    source = speech(2.0, 16000)
    data = source.tobytes()
    pipeline = SessionPipeline.for_codec("pcm_s16le", rate=16000, channels=1)
    out = b"".join(pipeline.push(chunk) for chunk in chunked(data, size)) + pipeline.finish()
    assert out == data


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(
    ("subtype", "dtype"),
    [
        ("PCM_16", "int16"),
        ("PCM_24", "int32"),
        ("PCM_32", "int32"),
        ("FLOAT", "float32"),
        ("PCM_U8", "int16"),
    ],
)
def test_wav_every_sample_format_sample_exact(size: int, subtype: str, dtype: str) -> None:
    source = tone_and_noise(1.5, 16000, channels=2)
    data = wav_bytes(source, 16000, subtype)
    expected_raw, _ = soundfile.read(io.BytesIO(data), dtype=dtype, always_2d=True)
    expected = to_int16(expected_raw)
    out = run("wav", chunked(data, size), rate=16000, channels=2)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("size", [1, 333, 4096])
@pytest.mark.parametrize(
    ("codec", "table", "av_codec"), [("mulaw", MULAW, "pcm_mulaw"), ("alaw", ALAW, "pcm_alaw")]
)
def test_g711_matches_ffmpeg_exactly(
    size: int, codec: str, table: npt.NDArray[np.int16], av_codec: str
) -> None:
    data = bytes(range(256)) * 40
    context = av.CodecContext.create(av_codec, "r")
    context.sample_rate, context.layout = 8000, "mono"
    reference = np.concatenate([f.to_ndarray().reshape(-1) for f in context.decode(av.Packet(data))])
    out = run(codec, chunked(data, size), rate=8000, channels=1)
    np.testing.assert_array_equal(out[:, 0], reference)
    np.testing.assert_array_equal(out[:, 0], table[np.frombuffer(data, dtype=np.uint8)])


def test_g711_wav_is_decoded() -> None:
    source = speech(1.0, 8000)
    data = wav_bytes(source, 8000, "ULAW")
    out = run("wav", chunked(data, 333), rate=8000, channels=1)
    np.testing.assert_array_equal(out, soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)[0])


@pytest.mark.parametrize(("rate", "channels"), [(16000, 1), (48000, 2), (8000, 1)])
def test_raw_opus_matches_libopus_exactly(rate: int, channels: int) -> None:
    source = speech(2.0, rate, channels)
    packets = opus_packets(source, rate)
    import opuslib  # noqa: PLC0415 - the reference decoder, used only here

    decoder = opuslib.Decoder(rate, channels)
    reference = b"".join(decoder.decode(p, rate * 120 // 1000) for p in packets)
    out = run("opus", packets, rate=rate, channels=channels)
    assert out.tobytes() == reference
    assert len(out) == len(packets) * rate // 50


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize("subtype", ["PCM_16", "PCM_24"])
def test_flac_is_lossless(size: int, subtype: str) -> None:
    source = speech(2.0, 44100, channels=2)
    out_file = io.BytesIO()
    samples = source.astype(np.int32) << 16 if subtype == "PCM_24" else source
    soundfile.write(out_file, samples, 44100, format="FLAC", subtype=subtype)
    expected, _ = soundfile.read(io.BytesIO(out_file.getvalue()), dtype="int32", always_2d=True)
    out = run("flac", chunked(out_file.getvalue(), size), rate=44100, channels=2)
    np.testing.assert_array_equal(out, to_int16(expected))


LOSSY = [
    ("mp3", "mp3", "libmp3lame", 44100),
    ("aac", "adts", "aac", 44100),
    ("ogg", "ogg", "libopus", 48000),
    ("ogg", "ogg", "vorbis", 44100),
    ("webm", "webm", "libopus", 48000),
]


@pytest.mark.parametrize("size", CHUNK_SIZES)
@pytest.mark.parametrize(("codec", "container", "encoder", "rate"), LOSSY)
def test_lossy_codecs_match_a_reference_decode(
    size: int, codec: str, container: str, encoder: str, rate: int
) -> None:
    source = speech(3.0, rate, channels=2)
    data = encode(source, rate, container=container, codec=encoder)
    reference, reference_rate = decode_file(data)
    assert reference_rate == rate
    out = run(codec, chunked(data, size), rate=rate, channels=2)
    snr, lag = aligned_snr_db(reference, out / 32768.0)
    assert snr >= 40.0, f"SNR {snr:.1f} dB at lag {lag}"
    assert abs(len(out) - len(reference)) <= 2 * 2048


@pytest.mark.parametrize(
    ("source_rate", "target_rate", "source_channels"),
    [(44100, 16000, 1), (8000, 16000, 1), (48000, 16000, 2)],
)
def test_resampling_matches_soxr_one_shot(source_rate: int, target_rate: int, source_channels: int) -> None:
    source = speech(3.0, source_rate, source_channels)
    data = wav_bytes(source, source_rate)
    mono = (mix_channels(source, 1) / 32768.0).astype(np.float32)
    expected = to_int16(soxr.resample(mono, source_rate, target_rate))
    outputs = [run("wav", chunked(data, size), rate=target_rate, channels=1) for size in (333, 4096, 4096)]
    out = outputs[0]
    assert out.shape == expected.shape
    assert np.abs(out.astype(np.int32) - expected).max() <= 1  # streaming vs one-shot, float rounding
    assert outputs[1].tobytes() == outputs[2].tobytes() == out.tobytes()  # deterministic, any chunking


def test_channel_mixing_is_explicit() -> None:
    stereo = np.array([[1000, -3], [-1, -2], [32767, 32767]], dtype=np.int16)
    np.testing.assert_array_equal(mix_channels(stereo, 1)[:, 0], [498, -2, 32767])  # floor((L+R)/2)
    mono = np.array([[5], [-7]], dtype=np.int16)
    np.testing.assert_array_equal(mix_channels(mono, 2), [[5, 5], [-7, -7]])
    surround = np.arange(12, dtype=np.int16).reshape(2, 6)
    np.testing.assert_array_equal(mix_channels(surround, 2), [[0, 1], [6, 7]])  # FL, FR


def test_mono_session_from_a_stereo_wav_and_back() -> None:
    stereo = tone_and_noise(1.0, 16000, channels=2)
    mono_out = run("wav", [wav_bytes(stereo, 16000)], rate=16000, channels=1)
    np.testing.assert_array_equal(mono_out, mix_channels(stereo, 1))
    mono = tone_and_noise(1.0, 16000, channels=1)
    stereo_out = run("wav", [wav_bytes(mono, 16000)], rate=16000, channels=2)
    np.testing.assert_array_equal(stereo_out, np.repeat(mono, 2, axis=1))


@pytest.mark.parametrize(
    ("codec", "chunks", "reason"),
    [
        ("opus", [b"\xff\xff\xff\xff\x00\x01"], "invalid Opus packet"),
        ("wav", [b"RIFX" + bytes(40)], "not a RIFF/WAVE stream"),
        ("wav", [b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00" + bytes(16) + b"data"], "format tag"),
        ("mp3", [bytes(range(256)) * 1100], "no decodable mp3 audio"),
        ("flac", [b"OggS" + bytes(100)], "fLaC"),
        ("ogg", [b"RIFF" + bytes(100)], "Ogg"),
        ("webm", [b"\x00" * 64], "EBML|WebM|Matroska"),
    ],
)
def test_undecodable_input_is_a_decode_error(codec: str, chunks: list[bytes], reason: str) -> None:
    pipeline = SessionPipeline.for_codec(codec, rate=16000, channels=1)
    with pytest.raises(DecodeError, match=reason):
        for chunk in chunks:
            pipeline.push(chunk)
        pipeline.finish()


def test_stateless_points_only_for_pcm_like_codecs() -> None:
    pcm = SessionPipeline.for_codec("pcm_s16le", rate=16000, channels=1)
    pcm.push(b"\x01\x02\x03")
    assert not pcm.stateless_here  # half a frame is held
    pcm.push(b"\x04")
    assert pcm.stateless_here
    resampling = SessionPipeline.for_codec("wav", rate=16000, channels=1)
    resampling.push(wav_bytes(tone_and_noise(0.5, 8000), 8000))
    assert not resampling.stateless_here  # the resampler carries filter history
    opus = SessionPipeline.for_codec("opus", rate=16000, channels=1)
    assert not opus.stateless_here
