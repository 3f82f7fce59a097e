"""The payload of a Matroska SimpleBlock or Block: track, timecode, flags and the (laced) frames."""

from dataclasses import dataclass

from .ebml import read_vint
from .errors import ContainerError
from .xiph import xiph_unlace

LACING_NONE = 0
LACING_XIPH = 1
LACING_FIXED = 2
LACING_EBML = 3
_FLAG_KEYFRAME = 0x80


@dataclass(frozen=True, slots=True)
class Block:
    """A parsed block. `timecode` is relative to its Cluster's, in TimecodeScale units."""

    track: int
    timecode: int
    flags: int
    frames: tuple[bytes, ...]

    @property
    def lacing(self) -> int:
        return (self.flags >> 1) & 0x03

    @property
    def keyframe(self) -> bool:
        """The SimpleBlock keyframe flag (meaningless in a Block)."""
        return bool(self.flags & _FLAG_KEYFRAME)


def parse_block(payload: bytes, at: int = 0) -> Block:
    """Read a whole SimpleBlock/Block payload; `at` is its stream offset, for messages."""
    track = read_vint(payload, 0, at)
    if track is None or len(payload) < track[1] + 3:
        raise ContainerError(f"block at byte {at} is too short for its header")
    pos = track[1]
    timecode = int.from_bytes(payload[pos : pos + 2], "big", signed=True)
    flags = payload[pos + 2]
    pos += 3
    lacing = (flags >> 1) & 0x03
    if lacing == LACING_NONE:
        frames = [payload[pos:]]
    elif lacing == LACING_XIPH:
        frames = xiph_unlace(payload[pos:], at + pos)
    elif lacing == LACING_FIXED:
        frames = _unlace_fixed(payload[pos:], at + pos)
    else:
        frames = _unlace_ebml(payload[pos:], at + pos)
    return Block(track=track[0], timecode=timecode, flags=flags, frames=tuple(frames))


def _unlace_fixed(laced: bytes, at: int) -> list[bytes]:
    if not laced:
        raise ContainerError(f"laced block without a frame count at byte {at}")
    count = laced[0] + 1
    size, rest = divmod(len(laced) - 1, count)
    if rest:
        raise ContainerError(f"{len(laced) - 1} bytes do not split into {count} equal frames at byte {at}")
    return [laced[1 + i * size : 1 + (i + 1) * size] for i in range(count)]


def _unlace_ebml(laced: bytes, at: int) -> list[bytes]:
    """EBML lacing: the first size as a vint, each next one as a signed vint difference to the previous."""
    if not laced:
        raise ContainerError(f"laced block without a frame count at byte {at}")
    count = laced[0] + 1
    pos = 1
    sizes: list[int] = []
    for i in range(count - 1):
        vint = read_vint(laced, pos, at + pos)
        if vint is None:
            raise ContainerError(f"EBML lacing runs past its block at byte {at}")
        value, length = vint
        # Differences are stored biased: subtracting half the range makes them signed.
        sizes.append(value if i == 0 else sizes[-1] + value - ((1 << (7 * length - 1)) - 1))
        pos += length
    if any(size < 0 for size in sizes) or pos + sum(sizes) > len(laced):
        raise ContainerError(f"EBML-laced frame sizes do not fit their block at byte {at}")
    frames = []
    for size in sizes:
        frames.append(laced[pos : pos + size])
        pos += size
    frames.append(laced[pos:])
    return frames
