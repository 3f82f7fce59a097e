"""Sample arithmetic the decoders share: frame alignment, int16 conversion, G.711, channel mixing.

Conventions (documented in the README):
- float → int16: round(x * 32768), clipped (FFmpeg's convention); decoded float samples are
  clipped to [-1, 1] and NaN made 0 before any mixing or resampling;
- int32 → int16: rounded, (x + 2**15) >> 16, clipped; 24-bit samples are held as int32 << 8;
- stereo → mono: floor((L + R) / 2) for integers, (L + R) / 2 for floats; more channels → mono: mean;
- mono → stereo: both channels equal; more than two channels → stereo: the first two (FL, FR).
"""

from typing import Any, Final

import numpy as np
import numpy.typing as npt

# Decoded audio, (frames, channels): int16, int32 (24/32-bit sources, high bits) or float32.
# numpy's dtype unions do not narrow under mypy, so the dtype is checked at run time instead.
Samples = npt.NDArray[Any]


class FrameAligner:
    """Cuts a byte stream into whole frames, carrying a partial frame to the next call."""

    def __init__(self, frame_bytes: int) -> None:
        self._frame_bytes = frame_bytes
        self._carry = b""

    def push(self, data: bytes) -> bytes:
        if self._carry:
            data = self._carry + data
        whole = len(data) - len(data) % self._frame_bytes
        self._carry = data[whole:]
        return data[:whole] if whole != len(data) else data

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame held back."""
        return len(self._carry)


def to_int16(samples: Samples) -> npt.NDArray[np.int16]:
    """Convert any decoded sample type to int16, by the conventions above."""
    if samples.dtype == np.int16:
        return samples
    if samples.dtype == np.int32:
        wide: npt.NDArray[np.int64] = (samples.astype(np.int64) + (1 << 15)) >> 16
        return np.clip(wide, -32768, 32767).astype(np.int16)
    scaled = np.rint(samples.astype(np.float64) * 32768.0)
    np.nan_to_num(scaled, copy=False, nan=0.0)  # a NaN cast to int16 is undefined (and warns)
    return np.clip(scaled, -32768, 32767).astype(np.int16)


def finite(samples: Samples) -> Samples:
    """Float samples clipped to full scale, NaN as silence.

    Done where samples are decoded, before mixing and resampling: a NaN or a huge value that
    reached the resampler would spread over its filter length, silencing or clipping the audio
    around it. (int16 clips at full scale anyway; only the resampler sees the difference.)"""
    clipped: Samples = np.clip(samples, -1.0, 1.0)
    return np.nan_to_num(clipped, copy=False, nan=0.0)


def mix_channels(samples: Samples, channels: int) -> Samples:
    """(frames, n) → (frames, channels)."""
    have = samples.shape[1]
    if have == channels:
        return samples
    if channels == 1:
        mono: Samples
        if samples.dtype.kind == "f":
            mono = samples.mean(axis=1, keepdims=True, dtype=np.float32)
        elif have == 2:
            summed = samples[:, 0].astype(np.int32) + samples[:, 1]
            mono = (summed >> 1).astype(samples.dtype).reshape(-1, 1)
        else:
            mono = np.floor(samples.mean(axis=1, keepdims=True)).astype(samples.dtype)
        return mono
    if have == 1:
        return np.repeat(samples, channels, axis=1)
    return np.ascontiguousarray(samples[:, :channels])


def _mulaw_table() -> npt.NDArray[np.int16]:
    table = np.empty(256, dtype=np.int16)
    for code in range(256):
        u = ~code & 0xFF
        magnitude = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        table[code] = (0x84 - magnitude) if u & 0x80 else (magnitude - 0x84)
    return table


def _alaw_table() -> npt.NDArray[np.int16]:
    table = np.empty(256, dtype=np.int16)
    for code in range(256):
        a = code ^ 0x55
        magnitude = (a & 0x0F) << 4
        segment = (a & 0x70) >> 4
        if segment == 0:
            magnitude += 8
        else:
            magnitude = (magnitude + 0x108) << (segment - 1)
        table[code] = magnitude if a & 0x80 else -magnitude
    return table


MULAW: Final = _mulaw_table()
ALAW: Final = _alaw_table()


def g711_decode(data: bytes, table: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    """One byte per sample → int16 (interleaved as the bytes were)."""
    return table[np.frombuffer(data, dtype=np.uint8)]
