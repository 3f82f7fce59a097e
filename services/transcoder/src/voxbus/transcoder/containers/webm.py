"""Push-based Matroska/WebM demuxer: bytes in any chunking, the first audio track's frames out."""

from dataclasses import dataclass
from enum import Enum

from . import matroska_ids as ids
from .buffer import ByteBuffer
from .ebml import is_unknown_size, iter_children, read_element_id, read_int, read_string, read_vint
from .errors import ContainerError
from .info import StreamInfo
from .matroska_block import parse_block
from .matroska_track import LEAVES, NS_PER_SECOND, TrackEntry

MAX_ELEMENT_SIZE = 16 * 1024 * 1024
"""The largest element read whole (headers, blocks of the audio track); bigger ones are refused."""
DOC_TYPES = ("webm", "matroska")
_EBML_MAGIC = ids.EBML_HEADER.to_bytes(4, "big")


class _Action(Enum):
    ENTER = "enter"  # a master: read its children next
    READ = "read"  # a leaf: wait for it whole
    BLOCK = "block"  # a (Simple)Block: read whole if of the audio track, else skip
    SKIP = "skip"  # drop its bytes as they arrive


_CHILD_ACTIONS: dict[int | None, dict[int, _Action]] = {
    None: {ids.SEGMENT: _Action.ENTER},
    ids.SEGMENT: {ids.TRACKS: _Action.ENTER, ids.CLUSTER: _Action.ENTER},
    ids.TRACKS: {ids.TRACK_ENTRY: _Action.ENTER},
    ids.TRACK_ENTRY: {ids.AUDIO: _Action.ENTER} | dict.fromkeys(LEAVES, _Action.READ),
    ids.AUDIO: dict.fromkeys(LEAVES, _Action.READ),
    ids.CLUSTER: {ids.SIMPLE_BLOCK: _Action.BLOCK, ids.BLOCK_GROUP: _Action.ENTER},
    ids.BLOCK_GROUP: {ids.BLOCK: _Action.BLOCK, ids.DISCARD_PADDING: _Action.READ},
}
"""What to do with a child of a master (None: the top level); children not listed are skipped."""
_STRICT_PARENTS: dict[int | None, tuple[str, frozenset[int]]] = {
    ids.CLUSTER: ("Cluster", ids.CLUSTER_CHILDREN),
    ids.BLOCK_GROUP: ("BlockGroup", ids.BLOCK_GROUP_CHILDREN),
}
"""Masters whose children Matroska fixes: any other id inside them is taken for corruption."""


@dataclass(frozen=True, slots=True)
class _Open:
    """A master element being read; `end` is None for an unknown size."""

    id: int
    offset: int
    end: int | None


@dataclass(frozen=True, slots=True)
class _Pending:
    """An element whose body is awaited."""

    id: int
    offset: int
    size: int
    action: _Action


class WebmDemuxer:
    """Turns a WebM/Matroska byte stream into the frames of its first audio track (Opus or Vorbis).

    Meant for what browsers' MediaRecorder and FFmpeg write: Segment and Cluster may have an unknown
    size, in which case a Cluster ends where a Segment-level element begins. Leaf elements are read
    whole; skipped elements (Cues, Void, other tracks' blocks, ...) are dropped as they arrive, so
    unparsed bytes never exceed one element of the audio track. Elements inside a Cluster or BlockGroup
    must be ones Matroska defines there: anything else is taken for corruption.
    """

    def __init__(self) -> None:
        self._buf = ByteBuffer()
        self._need = 0
        self._open: list[_Open] = []
        self._pending: _Pending | None = None
        self._skip = 0
        self._segments = 0
        self._entry: TrackEntry | None = None
        self._tracks_read = False
        self._track = 0
        self._info: StreamInfo | None = None
        self._group_is_audio = False
        self._group_padding_ns = 0
        self._padding_ns = 0
        self._ended = False
        self._truncated = False

    @property
    def info(self) -> StreamInfo | None:
        """The audio track's description, once its TrackEntry was read."""
        return self._info

    @property
    def discard_padding(self) -> int:
        """Samples (at the output rate) to drop from the end of the last frame returned so far.

        Matroska's DiscardPadding of that frame's BlockGroup, 0 without one; after `end()`, the end
        trimming of the stream, as Ogg's granule position gives it.
        """
        if self._info is None:
            return 0
        return max(0, round(self._padding_ns * self._info.output_rate / NS_PER_SECOND))

    @property
    def buffered(self) -> int:
        """Bytes received and not parsed yet: at most one element of the audio track plus one chunk."""
        return len(self._buf)

    @property
    def truncated(self) -> bool:
        """After `end()`: whether the stream stopped inside an element, or before the audio track."""
        return self._truncated

    def feed(self, data: bytes) -> list[bytes]:
        """Take the next bytes of the stream; return the audio frames they completed, in order."""
        if self._ended:
            raise RuntimeError("feed() after end()")
        self._buf.extend(data)
        frames: list[bytes] = []
        while len(self._buf) >= self._need:
            if not self._step(frames):
                break
            self._need = 0  # a zero-size element may come next, and needs no byte
        return frames

    def end(self) -> list[bytes]:
        """Mark the end of the stream. Frames are returned as soon as their block is complete, so this
        returns none; whether bytes were cut short is reported by `truncated`, never raised."""
        self._ended = True
        self._truncated = (
            len(self._buf) > 0
            or self._skip > 0
            or self._pending is not None
            or any(element.end is not None for element in self._open)
            or self._info is None
        )
        return []

    def _step(self, frames: list[bytes]) -> bool:
        """Make one move through the stream; False when more bytes are needed (see `_need`)."""
        buf = self._buf
        if self._skip:
            dropped = min(self._skip, len(buf))
            buf.drop(dropped)
            self._skip -= dropped
            if self._skip:
                self._need = 1
                return False
            self._close_finished()
            return True
        if self._pending is not None:
            return self._read_body(self._pending, frames)
        return self._read_header()

    def _read_header(self) -> bool:
        buf = self._buf
        at = buf.offset
        if at == 0 and not _EBML_MAGIC.startswith(bytes(buf.data[:4])):
            raise ContainerError(f"not WebM/Matroska: bad EBML magic {bytes(buf.data[:4])!r} at byte 0")
        head = read_element_id(buf.data, 0, at)
        if head is None:
            self._need = len(buf) + 1
            return False
        element_id, id_length = head
        self._close_unknown_sized(element_id)
        size = read_vint(buf.data, id_length, at + id_length)
        if size is None:
            self._need = len(buf) + 1
            return False
        buf.drop(id_length + size[1])
        self._start(element_id, None if is_unknown_size(*size) else size[0], at)
        return True

    def _start(self, element_id: int, size: int | None, at: int) -> None:
        body = self._buf.offset
        if size is None and element_id not in ids.UNKNOWN_SIZE_ENDED_BY:
            raise ContainerError(f"element {element_id:#x} at byte {at} has an unknown size")
        end = None if size is None else body + size
        limit = min((element.end for element in self._open if element.end is not None), default=None)
        if end is not None and limit is not None and end > limit:
            raise ContainerError(
                f"element {element_id:#x} at byte {at} overruns its parent, which ends at {limit}"
            )
        action = self._action(element_id, at)
        if action is _Action.ENTER:
            self._enter(element_id, at, end)
        elif size is None:
            raise ContainerError(f"cannot skip the unknown-size element {element_id:#x} at byte {at}")
        elif action is _Action.SKIP:
            self._skip = size
        else:
            self._pending = _Pending(id=element_id, offset=at, size=size, action=action)
        self._close_finished()

    def _action(self, element_id: int, at: int) -> _Action:
        if at == 0:
            return _Action.READ  # the EBML header, as the magic check made sure
        if element_id in ids.GLOBAL:
            return _Action.SKIP
        parent = self._open[-1].id if self._open else None
        strict = _STRICT_PARENTS.get(parent)
        if strict is not None and element_id not in strict[1]:
            raise ContainerError(f"unexpected element {element_id:#x} inside a {strict[0]} at byte {at}")
        if element_id in ids.TOP_LEVEL and parent is None:
            self._segments += 1
            if self._segments > 1 or element_id == ids.EBML_HEADER:
                raise ContainerError(f"chained Matroska segments (byte {at}) are not supported")
        elif element_id == ids.CLUSTER and self._info is None:
            raise ContainerError(f"Cluster at byte {at} before the Tracks that describe it")
        elif element_id == ids.TRACKS and self._tracks_read:
            return _Action.SKIP
        return _CHILD_ACTIONS.get(parent, {}).get(element_id, _Action.SKIP)

    def _enter(self, element_id: int, at: int, end: int | None) -> None:
        self._open.append(_Open(id=element_id, offset=at, end=end))
        if element_id == ids.TRACK_ENTRY:
            self._entry = TrackEntry(offset=at)
        elif element_id == ids.BLOCK_GROUP:
            self._group_is_audio = False
            self._group_padding_ns = 0

    def _read_body(self, pending: _Pending, frames: list[bytes]) -> bool:
        buf = self._buf
        if pending.action is _Action.BLOCK:
            track = read_vint(buf.data, 0, buf.offset)
            if track is None and len(buf) < pending.size:
                self._need = len(buf) + 1
                return False
            if track is None or track[1] + 3 > pending.size:  # track number, int16 timecode, flags
                raise ContainerError(f"block at byte {pending.offset} is too short for its header")
            if track[0] != self._track:
                self._pending = None
                self._skip = pending.size
                return True
        if pending.size > MAX_ELEMENT_SIZE:
            raise ContainerError(
                f"element {pending.id:#x} at byte {pending.offset} is {pending.size} bytes,"
                f" more than the {MAX_ELEMENT_SIZE} read whole"
            )
        if len(buf) < pending.size:
            self._need = pending.size
            return False
        body_at = buf.offset
        payload = buf.take(pending.size)
        self._pending = None
        if pending.action is _Action.BLOCK:
            frames += (frame for frame in parse_block(payload, body_at).frames if frame)
            self._padding_ns = 0
            self._group_is_audio = pending.id == ids.BLOCK
        elif pending.id == ids.DISCARD_PADDING:
            self._group_padding_ns = read_int(payload, body_at)
        elif pending.id == ids.EBML_HEADER:
            self._check_doc_type(payload, body_at)
        elif self._entry is not None:
            self._entry.set(pending.id, payload, body_at)
        self._close_finished()
        return True

    @staticmethod
    def _check_doc_type(payload: bytes, at: int) -> None:
        doc_type = "matroska"  # the default when DocType is absent
        for element_id, body, _ in iter_children(payload, at):
            if element_id == ids.DOC_TYPE:
                doc_type = read_string(body)
        if doc_type not in DOC_TYPES:
            raise ContainerError(f"unsupported EBML DocType {doc_type!r} in the header at byte 0")

    def _close_unknown_sized(self, element_id: int) -> None:
        """Close the unknown-size masters that the element `element_id` cannot be inside."""
        while self._open and self._open[-1].end is None:
            ended_by = ids.UNKNOWN_SIZE_ENDED_BY.get(self._open[-1].id, frozenset())
            if element_id not in ended_by:
                return
            self._close()

    def _close_finished(self) -> None:
        """Close the masters whose end was reached (with any unknown-size ones inside them)."""
        offset = self._buf.offset
        while any(element.end is not None and element.end <= offset for element in self._open):
            self._close()

    def _close(self) -> None:
        element = self._open.pop()
        if element.id == ids.TRACK_ENTRY and self._entry is not None:
            entry, self._entry = self._entry, None
            if entry.is_audio and self._info is None:
                self._info = entry.stream_info()
                self._track = entry.number
        elif element.id == ids.BLOCK_GROUP and self._group_is_audio:
            # DiscardPadding may follow the Block inside the group, so it applies once the group ends.
            self._padding_ns = self._group_padding_ns
        elif element.id == ids.TRACKS:
            self._tracks_read = True
            if self._info is None:
                raise ContainerError(f"no audio track in the Tracks at byte {element.offset}")
