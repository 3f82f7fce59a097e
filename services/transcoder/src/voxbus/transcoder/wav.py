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
# A chunk after the audio data larger than this is taken for audio (cover art in an 'id3 ' chunk
# fits); read as a size, four bytes of audio are rarely that small *and* preceded by a name.
_MAX_TRAILING_CHUNK_BYTES: Final = 16 << 20
# Declared formats voxbus takes: a lower rate (or more channels) is not a recording anyone makes,
# and would only multiply the output (a 1000 Hz stream resampled to 96 kHz is 96x its input).
MIN_RATE: Final = 8000
MAX_RATE: Final = 384_000
MAX_CHANNELS: Final = 8


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
            if not _is_chunk_id(chunk_id):
                raise WavError(f"not a WAV stream: no RIFF chunk at byte {position} (found {chunk_id!r})")
            if chunk_id != b"data" and size > _MAX_HEADER_BYTES:
                raise WavError(
                    f"WAV {chunk_id.decode()!r} chunk of {size} bytes before the audio data"
                    f" (a header may take {_MAX_HEADER_BYTES} bytes)"
                )
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

    def missing(self) -> str | None:
        """At the end of the stream, before the audio data: what the stream lacked (None: it was empty)."""
        received = len(self._buffer)
        if not received:
            return None
        if received < 12:
            return f"the stream ended inside the WAV's RIFF header ({received} bytes)"
        lacking = "'fmt ' and 'data' chunks" if self._format is None else "'data' chunk"
        return f"no WAV {lacking} in the {received} bytes received"


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
    if not MIN_RATE <= rate <= MAX_RATE:
        raise WavError(
            f"WAV header declares a sample rate of {rate} Hz; voxbus takes {MIN_RATE}-{MAX_RATE} Hz"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise WavError(f"WAV header declares {channels} channels; voxbus takes 1-{MAX_CHANNELS}")
    return encoding, bits, rate, channels


def _is_chunk_id(chunk_id: bytes) -> bool:
    """RIFF chunk names are four printable ASCII characters ('fmt ', 'LIST', 'id3 ', …)."""
    return all(0x20 <= byte <= 0x7E for byte in chunk_id)


class WavDataReader:
    """The audio bytes of what follows the 'data' chunk header.

    A header's data size is not always true: streaming writers put 0 or 0xFFFFFFFF there (read
    as unbounded), and some put a guess, such as the size of their first buffer. So the size is
    trusted only if a RIFF chunk follows where it says the data ends (metadata at the end of a
    file, skipped); if other bytes follow, they are audio the size left out, and all of the
    stream is recorded. Bytes after trailing chunks that are not a chunk either fail the stream.
    """

    def __init__(self, declared: int | None) -> None:
        self._left = declared  # audio bytes before the declared end; None: no end
        self._pad = 1 if declared is not None and declared & 1 else 0  # odd chunks are padded
        self._probe = b""  # bytes past the declared end, until they show what follows
        self._trailing = False  # past the end, reading (skipping) RIFF chunks
        self._head = bytearray()  # a trailing chunk's header, as it arrives
        self._skip = 0  # bytes of the current trailing chunk still to skip

    @property
    def settled(self) -> bool:
        """No bytes held back while deciding what follows the declared end."""
        return not self._probe

    def audio(self, data: bytes) -> bytes:
        if self._left is None:
            return data
        if self._left:
            audio = data[: self._left]
            self._left -= len(audio)
            if len(audio) == len(data):
                return audio
            return audio + self._past_end(data[len(audio) :])
        return self._past_end(data)

    def end(self) -> bytes:
        """At the end of the stream: bytes past the declared end too few to be a chunk are audio."""
        probe, self._probe = self._probe, b""
        if len(probe) <= self._pad:
            return b""  # the pad byte after an odd-sized data chunk
        return probe

    def _past_end(self, data: bytes) -> bytes:
        if self._trailing:
            self._skip_chunks(data)
            return b""
        self._probe += data
        if len(self._probe) < self._pad + 8:
            return b""
        probe, self._probe = self._probe, b""
        header = probe[self._pad : self._pad + 8]
        (size,) = struct.unpack_from("<I", header, 4)
        if _is_chunk_id(header[:4]) and size <= _MAX_TRAILING_CHUNK_BYTES:
            self._trailing = True
            self._skip_chunks(probe[self._pad :])
            return b""
        self._left = None  # the declared size was short: the rest of the stream is audio
        return probe

    def _skip_chunks(self, data: bytes) -> None:
        position = 0
        while position < len(data):
            if self._skip:
                step = min(self._skip, len(data) - position)
                self._skip -= step
                position += step
                continue
            take = min(8 - len(self._head), len(data) - position)
            self._head += data[position : position + take]
            position += take
            if len(self._head) == 8:
                if not _is_chunk_id(bytes(self._head[:4])):
                    raise WavError(
                        "bytes after the WAV audio data are neither audio nor a RIFF chunk"
                        f" (found {bytes(self._head[:4])!r})"
                    )
                (size,) = struct.unpack_from("<I", self._head, 4)
                self._skip = size + (size & 1)
                self._head.clear()
