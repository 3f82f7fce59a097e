"""Incremental RIFF/WAVE header parsing: the header may arrive split across any number of chunks."""

import struct
from dataclasses import dataclass
from typing import Final

_PCM: Final = 1
_FLOAT: Final = 3
_ALAW: Final = 6
_MULAW: Final = 7
_EXTENSIBLE: Final = 0xFFFE
_MAX_HEADER_BYTES: Final = 1 << 20  # a header (fmt, LIST, …) larger than this is not a stream we take
_UNBOUNDED_SIZES: Final = (0, 0xFFFFFFFF, 0x7FFFFFFF)  # streaming writers' "size unknown"


class WavError(ValueError):
    """Bytes that are not a WAV stream voxbus can read."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WavFormat:
    encoding: str  # "int" | "float" | "alaw" | "mulaw"
    bits: int
    sample_rate: int
    channels: int
    data_bytes: int | None  # None: unbounded (a stream whose size was not known when written)

    @property
    def block_align(self) -> int:
        return self.channels * (self.bits // 8)


class WavHeaderParser:
    """Feed bytes until `feed` returns the format; the bytes after the data-chunk header come with it."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._format: tuple[str, int, int, int] | None = None

    def feed(self, data: bytes) -> tuple[WavFormat, bytes] | None:
        self._buffer += data
        if len(self._buffer) < 12:
            return None
        if self._buffer[:4] != b"RIFF" or self._buffer[8:12] != b"WAVE":
            raise WavError("not a RIFF/WAVE stream (missing 'RIFF'…'WAVE' at byte 0)")
        position = 12
        while len(self._buffer) >= position + 8:
            chunk_id = bytes(self._buffer[position : position + 4])
            (size,) = struct.unpack_from("<I", self._buffer, position + 4)
            body = position + 8
            if chunk_id == b"data":
                if self._format is None:
                    raise WavError("WAV 'data' chunk before its 'fmt ' chunk")
                encoding, bits, rate, channels = self._format
                rest = bytes(self._buffer[body:])
                self._buffer.clear()
                bounded = None if size in _UNBOUNDED_SIZES else size
                return WavFormat(
                    encoding=encoding, bits=bits, sample_rate=rate, channels=channels, data_bytes=bounded
                ), rest
            if len(self._buffer) < body + size:
                break
            if chunk_id == b"fmt ":
                self._format = _parse_fmt(bytes(self._buffer[body : body + size]))
            position = body + size + (size & 1)  # chunks are padded to even length
        if len(self._buffer) > _MAX_HEADER_BYTES:
            raise WavError(f"no WAV 'data' chunk within the first {_MAX_HEADER_BYTES} bytes")
        return None


def _parse_fmt(body: bytes) -> tuple[str, int, int, int]:
    if len(body) < 16:
        raise WavError(f"WAV 'fmt ' chunk too short ({len(body)} bytes)")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", body)
    if tag == _EXTENSIBLE:
        if len(body) < 26:
            raise WavError("WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk without its sub-format")
        (tag,) = struct.unpack_from("<H", body, 24)
    encodings = {_PCM: "int", _FLOAT: "float", _ALAW: "alaw", _MULAW: "mulaw"}
    if tag not in encodings:
        raise WavError(f"unsupported WAV format tag {tag:#06x}")
    encoding = encodings[tag]
    valid_bits = {"int": (8, 16, 24, 32), "float": (32, 64), "alaw": (8,), "mulaw": (8,)}[encoding]
    if bits not in valid_bits:
        raise WavError(f"unsupported WAV sample size: {bits}-bit {encoding}")
    if not 1 <= channels <= 8 or not 1000 <= rate <= 384_000:
        raise WavError(f"implausible WAV format: {channels} channels at {rate} Hz")
    return encoding, bits, rate, channels
