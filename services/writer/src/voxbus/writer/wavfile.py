"""Append-only 16-bit PCM WAV files whose header is brought up to date in place on every flush.

The file is the 44-byte canonical header (RIFF, WAVE, a 16-byte `fmt ` chunk of format 1, `data`)
followed by interleaved little-endian samples. Appending never reads the file back and never rewrites
audio: a flush writes the two size fields and nothing else, so the cost is linear in bytes written.
"""

import io
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Final, Self

Pcm = bytes | bytearray | memoryview

HEADER_SIZE: Final = 44
SAMPLE_BYTES: Final = 2
# The RIFF size field (36 + data bytes) is 32 bits wide.
MAX_DATA_BYTES: Final = 0xFFFFFFFF - 36

_HEADER: Final = struct.Struct("<4sI4s4sIHHIIHH4sI")
_SIZE: Final = struct.Struct("<I")
_RIFF_SIZE_AT: Final = 4
_DATA_SIZE_AT: Final = 40


class WavFormatError(ValueError):
    """The file is not a WAV written by `WavAppender`, or its format is not the one expected."""


class LostDataError(RuntimeError):
    """The file holds fewer frames than were acknowledged as durable: a durability bug upstream."""


class WavTooLargeError(ValueError):
    """The audio would not fit in a WAV file's 32-bit size fields."""


def frame_size(channels: int) -> int:
    """Bytes per frame (one sample of every channel) of 16-bit PCM."""
    return SAMPLE_BYTES * channels


def wav_header(sample_rate: int, channels: int, data_bytes: int) -> bytes:
    """The canonical 44-byte header of a 16-bit PCM WAV holding `data_bytes` of audio."""
    if not 0 < channels <= 0xFFFF:
        raise ValueError(f"channels must be in 1..65535, got {channels}")
    byte_rate = sample_rate * frame_size(channels)
    if sample_rate <= 0 or byte_rate > 0xFFFFFFFF:
        raise ValueError(f"sample rate {sample_rate} Hz is out of range for a WAV file")
    if not 0 <= data_bytes <= MAX_DATA_BYTES:
        raise WavTooLargeError(_too_large(data_bytes))
    return _HEADER.pack(
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        sample_rate,
        byte_rate,
        frame_size(channels),
        8 * SAMPLE_BYTES,
        b"data",
        data_bytes,
    )


def check_header(header: bytes, path: Path, sample_rate: int, channels: int) -> None:
    """Raise `WavFormatError` unless `header` is a canonical header of the expected format.

    The size fields are not checked: after a crash they may lag or lead the audio actually present.
    """
    expected = wav_header(sample_rate, channels, 0)
    fields = _HEADER.unpack(header)
    if (fields[0], fields[2], fields[3], fields[4], fields[11]) != (b"RIFF", b"WAVE", b"fmt ", 16, b"data"):
        raise WavFormatError(f"{path} is not a canonical 16-bit PCM WAV file as written by WavAppender")
    if header[20:36] != expected[20:36]:
        fmt, got_channels, got_rate, _, _, bits = fields[5:11]
        raise WavFormatError(
            f"{path} holds format {fmt}, {bits}-bit, {got_rate} Hz, {got_channels} channel(s);"
            f" expected 16-bit PCM (format 1), {sample_rate} Hz, {channels} channel(s)"
        )


def stored_frames(path: Path, sample_rate: int, channels: int) -> int:
    """Whole frames present in the file after its header, which must have the expected format.

    A file too short to hold a header counts as holding no frames. Raises `FileNotFoundError` if
    there is no file.
    """
    with path.open("rb") as file:
        header = file.read(HEADER_SIZE)
        if len(header) < HEADER_SIZE:
            return 0
        check_header(header, path, sample_rate, channels)
        return (os.fstat(file.fileno()).st_size - HEADER_SIZE) // frame_size(channels)


class WavAppender:
    """One 16-bit PCM WAV file open for appending; a valid, playable file after every `flush`.

    Make one with `create` (a new file) or `reopen` (continue a file after a crash or restart).
    After an error while writing, the file's state is unknown: the appender refuses further work, and
    the caller resumes with `reopen` from its last checkpoint.
    """

    def __init__(self, path: Path, file: io.BufferedRandom, channels: int, frames: int) -> None:
        """Wrap `file`, positioned right after `frames` frames of audio; use `create` or `reopen`."""
        self._path = path
        self._file = file
        self._frame_size = frame_size(channels)
        self._data_bytes = frames * self._frame_size
        self._header_data_bytes = self._data_bytes
        self._failed = False

    @classmethod
    def create(cls, path: Path, sample_rate: int, channels: int, *, replace: bool = False) -> Self:
        """Create an empty WAV file at `path`, its header handed to the OS (not fsynced).

        A file already there raises `FileExistsError`, or is emptied with `replace`.
        """
        header = wav_header(sample_rate, channels, 0)
        file = path.open("wb+") if replace else path.open("xb+")
        try:
            file.write(header)
            file.flush()
        except BaseException:
            file.close()
            raise
        return cls(path, file, channels, 0)

    @classmethod
    def reopen(cls, path: Path, sample_rate: int, channels: int, frames: int) -> Self:
        """Open a file written by `WavAppender` and continue it after its first `frames` frames.

        `frames` is the count last acknowledged as durable. Anything stored past it is the tail of a
        write that was never acknowledged and is cut off. A file holding fewer frames raises
        `LostDataError`; one of another format raises `WavFormatError`. When `frames` is 0, a file
        that is missing or too short to hold its header (a crash before it reached the disk) is
        written afresh.
        """
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        data_bytes = frames * frame_size(channels)
        header = wav_header(sample_rate, channels, data_bytes)
        try:
            file = path.open("r+b")
        except FileNotFoundError:
            if frames:
                raise LostDataError(f"{path} is missing but {frames} frames were acknowledged") from None
            return cls.create(path, sample_rate, channels)
        try:
            end = HEADER_SIZE + data_bytes
            stored = file.read(HEADER_SIZE)
            if len(stored) == HEADER_SIZE:
                check_header(stored, path, sample_rate, channels)
                size = os.fstat(file.fileno()).st_size
                if size < end:
                    raise LostDataError(
                        f"{path} holds {(size - HEADER_SIZE) // frame_size(channels)} frames but {frames}"
                        " were acknowledged as durable: the file lost acknowledged data (a durability bug;"
                        " refusing to continue over the gap)"
                    )
            elif frames:
                raise LostDataError(f"{path} has no complete header but {frames} frames were acknowledged")
            file.truncate(end)
            file.seek(0)
            file.write(header)
            file.seek(end)
            file.flush()
        except BaseException:
            file.close()
            raise
        return cls(path, file, channels, frames)

    @property
    def path(self) -> Path:
        """Where the file is."""
        return self._path

    @property
    def frames(self) -> int:
        """Frames appended so far, whether or not flushed."""
        return self._data_bytes // self._frame_size

    def check_append(self, nbytes: int) -> int:
        """How many frames `nbytes` of PCM hold; raises if they cannot be appended (nothing is written).

        `ValueError` if `nbytes` is not a whole number of frames, `WavTooLargeError` if the file would
        outgrow the 4 GiB WAV format.
        """
        if nbytes % self._frame_size:
            raise ValueError(f"{nbytes} bytes of PCM is not a whole number of {self._frame_size}-byte frames")
        if self._data_bytes + nbytes > MAX_DATA_BYTES:
            raise WavTooLargeError(_too_large(self._data_bytes + nbytes))
        return nbytes // self._frame_size

    def append(self, pcm: Pcm) -> None:
        """Append interleaved s16le frames; they reach the header on the next `flush`."""
        view = memoryview(pcm).cast("B")
        self.check_append(len(view))
        self._ensure_usable()
        try:
            self._file.write(view)
        except BaseException:
            self._failed = True
            raise
        self._data_bytes += len(view)

    def flush(self, fsync: bool) -> None:
        """Bring the header's sizes up to date and hand everything to the OS; `fsync` makes it durable."""
        self._ensure_usable()
        try:
            if self._header_data_bytes != self._data_bytes:
                # Only the size fields are rewritten: a flush never touches the format fields that
                # `reopen` checks. One fsync covers audio and header alike, in no particular order on
                # disk: recovery trusts the caller's checkpoint, never the header's sizes.
                self._file.seek(_RIFF_SIZE_AT)
                self._file.write(_SIZE.pack(36 + self._data_bytes))
                self._file.seek(_DATA_SIZE_AT)
                self._file.write(_SIZE.pack(self._data_bytes))
                self._file.seek(HEADER_SIZE + self._data_bytes)
                self._header_data_bytes = self._data_bytes
            self._file.flush()
            if fsync:
                os.fsync(self._file.fileno())
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        """Update the header (without fsync) and close; closing again does nothing.

        After a failed write the header is left alone: the file is only closed.
        """
        if self._file.closed:
            return
        try:
            if not self._failed:
                self.flush(fsync=False)
        finally:
            self._file.close()

    def abandon(self) -> None:
        """Close without updating the header, as a crash would leave the file (buffered audio still
        reaches the OS). For giving up after an error, and for tests."""
        try:
            self._file.close()
        except OSError:
            self._failed = True

    def _ensure_usable(self) -> None:
        if self._file.closed:
            raise ValueError(f"{self._path} is closed")
        if self._failed:
            raise RuntimeError(
                f"an earlier write to {self._path} failed and its state is unknown; reopen it from the last"
                " checkpoint"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _too_large(data_bytes: int) -> str:
    return (
        f"{data_bytes} bytes of audio exceed the 4 GiB limit of a WAV file's 32-bit size fields"
        f" ({MAX_DATA_BYTES} bytes of data at most); longer recordings need RF64, which this writer"
        " does not support"
    )
