"""Real test audio: speech from espeak-ng, tones and noise, encoded with the real encoders.

espeak-ng (Debian package `espeak-ng`) speaks; PyAV's FFmpeg encodes mp3 (LAME), aac, flac,
Vorbis and Opus in containers; opuslib (libopus) encodes raw Opus packets.
"""

import io
import shutil
import subprocess
import tempfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import opuslib
import soundfile
import soxr

Int16 = npt.NDArray[np.int16]

SPEECH_TEXT = (
    "voxbus records every stream as a wave file, whole session plus thirty second segments. "
    "Nothing a client was told was accepted is ever lost."
)


def speech(seconds: float, rate: int, channels: int = 1) -> Int16:
    """espeak-ng speech, repeated to `seconds`, at `rate`; the right channel is a quieter copy."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is missing: apt-get install -y espeak-ng (make test installs it)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run([espeak, "-w", str(path), SPEECH_TEXT], check=True, capture_output=True)
        voice, voice_rate = soundfile.read(path, dtype="int16")
    voice = soxr.resample(voice, voice_rate, rate) if voice_rate != rate else voice
    frames = int(seconds * rate)
    mono = np.resize(voice, frames).astype(np.int16)
    if channels == 1:
        return mono.reshape(-1, 1)
    return np.stack([mono, (mono // 2).astype(np.int16)], axis=1)


def tone_and_noise(seconds: float, rate: int, channels: int = 1, *, seed: int = 7) -> Int16:
    """A 440 Hz tone (660 Hz on the right) with a little noise; deterministic."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    columns = [
        0.4 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
        for freq in (440.0, 660.0)[:channels]
    ]
    return (np.clip(np.stack(columns, axis=1), -1, 1) * 32767).astype(np.int16)


def wav_bytes(samples: npt.NDArray[np.generic], rate: int, subtype: str = "PCM_16") -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format="WAV", subtype=subtype)
    return out.getvalue()


def encode(samples: Int16, rate: int, *, container: str, codec: str, bit_rate: int = 128_000) -> bytes:
    """Encode int16 (frames, channels) with FFmpeg (PyAV) into `container` bytes."""
    channels = samples.shape[1]
    out = io.BytesIO()
    with av.open(out, "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout="mono" if channels == 1 else "stereo")
        stream.bit_rate = bit_rate
        if codec == "vorbis":
            stream.codec_context.options = {"strict": "experimental"}
        frame_size = 1152 if codec in ("libmp3lame", "mp3") else 1024
        if codec in ("libopus", "opus"):
            frame_size = rate // 50
        for start in range(0, len(samples), frame_size):
            block = np.ascontiguousarray(samples[start : start + frame_size])
            frame = av.AudioFrame.from_ndarray(
                block.reshape(1, -1), format="s16", layout="mono" if channels == 1 else "stereo"
            )
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return out.getvalue()


def decode_file(data: bytes) -> tuple[npt.NDArray[np.float32], int]:
    """Reference decode of a whole file with FFmpeg's demuxer and decoder: float (frames, ch), rate."""
    blocks = []
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        for frame in container.decode(stream):
            array = frame.to_ndarray()
            block = array.T if frame.format.is_planar else array.reshape(-1, frame.layout.nb_channels)
            blocks.append(block.astype(np.float32) if block.dtype.kind == "f" else block / 32768.0)
    return np.concatenate(blocks).astype(np.float32), rate


def opus_packets(samples: Int16, rate: int, *, frame_ms: int = 20) -> list[bytes]:
    """Raw Opus packets (libopus), one per `frame_ms`, as Omi-style devices send them."""
    channels = samples.shape[1]
    encoder = opuslib.Encoder(rate, channels, opuslib.APPLICATION_AUDIO)
    frame = rate * frame_ms // 1000
    usable = len(samples) - len(samples) % frame
    return [
        encoder.encode(np.ascontiguousarray(samples[i : i + frame]).tobytes(), frame)
        for i in range(0, usable, frame)
    ]


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def snr_db(reference: npt.NDArray[np.floating], test: npt.NDArray[np.floating]) -> float:
    noise = reference - test
    return float(10 * np.log10(np.sum(reference**2) / max(float(np.sum(noise**2)), 1e-20)))


def aligned_snr_db(
    reference: npt.NDArray[np.floating], test: npt.NDArray[np.floating], *, max_lag: int = 4096
) -> tuple[float, int]:
    """SNR after shifting `test` by the lag (within ±max_lag) that matches `reference` best.

    Encoders add delay that a demuxer trims (LAME's gapless header, Opus pre-skip) and a parser
    does not, so a stream decode and a file decode of the same file can be offset by a few frames.
    """
    ref, tst = reference[:, 0].astype(np.float64), test[:, 0].astype(np.float64)
    window = min(len(ref), len(tst)) - 2 * max_lag
    probe = ref[max_lag : max_lag + window]
    best_lag, best = 0, -np.inf
    for lag in range(-max_lag, max_lag + 1):
        start = max_lag + lag
        if start < 0 or start + window > len(tst):
            continue
        score = float(np.dot(probe, tst[start : start + window]))
        if score > best:
            best, best_lag = score, lag
    start = max_lag + best_lag
    return snr_db(probe, tst[start : start + window]), best_lag
