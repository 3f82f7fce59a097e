"""Push-based native FLAC reader: STREAMINFO out of the metadata, then the frame bytes as they come."""

from enum import Enum

from .buffer import ByteBuffer
from .errors import ContainerError
from .info import StreamInfo

MAGIC = b"fLaC"
STREAMINFO_TYPE = 0
STREAMINFO_SIZE = 34
_INVALID_BLOCK_TYPE = 127
_BLOCK_HEADER_SIZE = 4
_LAST_BLOCK = 0x80


class _State(Enum):
    MAGIC = "magic"
    BLOCK_HEADER = "block header"
    STREAMINFO = "streaminfo"
    SKIP = "skip"
    SYNC = "sync"
    FRAMES = "frames"


def parse_streaminfo(body: bytes, at: int) -> StreamInfo:
    """The StreamInfo of a 34-byte STREAMINFO block body; `at` is its stream offset, for messages."""
    if len(body) != STREAMINFO_SIZE:
        raise ContainerError(f"STREAMINFO of {len(body)} bytes at byte {at}, expected {STREAMINFO_SIZE}")
    # 20 bits sample rate, 3 bits channels-1, 5 bits bits-per-sample-1, 36 bits total samples.
    packed = int.from_bytes(body[10:18], "big")
    sample_rate = packed >> 44
    if sample_rate == 0:
        raise ContainerError(f"STREAMINFO with sample rate 0 at byte {at}")
    total = packed & ((1 << 36) - 1)
    return StreamInfo(
        codec="flac",
        sample_rate=sample_rate,
        channels=((packed >> 41) & 0x07) + 1,
        bits_per_sample=((packed >> 36) & 0x1F) + 1,
        total_samples=total or None,
        extradata=body,
    )


class FlacStream:
    """Reads the "fLaC" magic and the metadata blocks (STREAMINFO first, others skipped as they arrive),
    then passes the frame bytes through unsplit: FFmpeg's FLAC parser finds the frame boundaries.
    """

    def __init__(self) -> None:
        self._buf = ByteBuffer()
        self._state = _State.MAGIC
        self._skip = 0
        self._last_block = False
        self._info: StreamInfo | None = None
        self._ended = False
        self._truncated = False

    @property
    def info(self) -> StreamInfo | None:
        """The stream's description, once STREAMINFO was read."""
        return self._info

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet: at most STREAMINFO (34 bytes) plus one chunk."""
        return len(self._buf)

    @property
    def truncated(self) -> bool:
        """After `end()`: whether the stream stopped before its metadata or first frame header was whole.

        Frames are not parsed here, so a frame cut short is left for the decoder to notice.
        """
        return self._truncated

    def feed(self, data: bytes) -> bytes:
        """Take the next bytes of the stream; return the frame bytes among them (possibly none).

        Skip empty results rather than handing them to PyAV's `CodecContext.parse`: it takes empty input
        as end of stream, and FFmpeg's FLAC parser, flushed once, crashes the process on the next bytes.
        """
        if self._ended:
            raise RuntimeError("feed() after end()")
        if self._state is _State.FRAMES:
            return bytes(data)
        self._buf.extend(data)
        while not self._in_frames() and self._step():
            pass
        if self._in_frames():
            return self._buf.take(len(self._buf))
        return b""

    def end(self) -> bytes:
        """Mark the end of the stream. Frame bytes are returned as they arrive, so this returns none."""
        self._ended = True
        self._truncated = self._state is not _State.FRAMES and not (
            self._state is _State.SYNC and len(self._buf) == 0
        )
        return b""

    def _step(self) -> bool:
        """Make one move through the metadata; False when more bytes are needed."""
        if self._state is _State.SKIP:
            return self._skip_block()
        if self._state is _State.MAGIC:
            return self._read_magic()
        if self._state is _State.BLOCK_HEADER:
            return self._read_block_header()
        if self._state is _State.STREAMINFO:
            return self._read_streaminfo()
        return self._check_sync()

    def _in_frames(self) -> bool:
        return self._state is _State.FRAMES

    def _after_block(self) -> None:
        self._state = _State.SYNC if self._last_block else _State.BLOCK_HEADER

    def _skip_block(self) -> bool:
        dropped = min(self._skip, len(self._buf))
        self._buf.drop(dropped)
        self._skip -= dropped
        if self._skip:
            return False
        self._after_block()
        return True

    def _read_magic(self) -> bool:
        head = bytes(self._buf.data[:4])
        if not MAGIC.startswith(head):
            raise ContainerError(
                f"not FLAC: bad magic {head!r} at byte {self._buf.offset} (expected b'fLaC')"
            )
        if len(head) < len(MAGIC):
            return False
        self._buf.drop(len(MAGIC))
        self._state = _State.BLOCK_HEADER
        return True

    def _read_streaminfo(self) -> bool:
        if len(self._buf) < STREAMINFO_SIZE:
            return False
        at = self._buf.offset
        self._info = parse_streaminfo(self._buf.take(STREAMINFO_SIZE), at)
        self._after_block()
        return True

    def _check_sync(self) -> bool:
        """The first frame must start with the 14-bit sync code 0b11111111111110."""
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf.data[0] != 0xFF or buf.data[1] & 0xFE != 0xF8:
            raise ContainerError(f"no FLAC frame sync code at byte {buf.offset}, where the metadata ends")
        self._state = _State.FRAMES
        return True

    def _read_block_header(self) -> bool:
        buf = self._buf
        at = buf.offset
        if len(buf) < _BLOCK_HEADER_SIZE:
            return False
        header = buf.take(_BLOCK_HEADER_SIZE)
        self._last_block = bool(header[0] & _LAST_BLOCK)
        block_type = header[0] & ~_LAST_BLOCK
        length = int.from_bytes(header[1:], "big")
        if block_type == _INVALID_BLOCK_TYPE:
            raise ContainerError(f"invalid FLAC metadata block type 127 at byte {at}")
        if (block_type == STREAMINFO_TYPE) != (self._info is None):
            raise ContainerError(f"FLAC metadata block at byte {at}: STREAMINFO must come first, and once")
        if block_type == STREAMINFO_TYPE:
            if length != STREAMINFO_SIZE:
                raise ContainerError(f"STREAMINFO of {length} bytes at byte {at}, expected {STREAMINFO_SIZE}")
            self._state = _State.STREAMINFO
        else:
            self._skip = length
            self._state = _State.SKIP
        return True
