"""One session's recording on disk: the whole-session WAV file and its fixed-length segments.

Under the storage root a session `sid` has `{sid}.wav`, the whole session, and the directory `{sid}/`
of `segment_{index:05d}.wav` files. Segment k holds frames [k*F, (k+1)*F) where
F = round(segment_seconds * sample_rate); the last one may be shorter. The segments' audio,
concatenated, is exactly the whole file's audio.
"""

import math
import os
import re
import uuid
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from voxbus.writer.wavfile import LostDataError, Pcm, WavAppender, frame_size, stored_frames

_SEGMENT_NAME: Final = re.compile(r"segment_(\d+)\.wav")


def segment_name(index: int) -> str:
    """The file name of segment `index` inside the session's directory."""
    return f"segment_{index:05d}.wav"


class SessionRecording:
    """The whole-session WAV file and the segment files of one session, written in step.

    Segment files appear with their first frame: a session without audio has a valid, empty whole
    file, an empty segment directory and no segment file, and a segment that would start exactly at
    the end of the audio does not exist. Completed segments are closed once a `flush` has made them
    durable.

    `create` starts a session from nothing, replacing whatever files an earlier attempt that
    checkpointed nothing left behind; `resume` continues from the frame count last checkpointed. After
    an error while writing, the recording refuses further work; resume it from the last checkpoint.
    """

    def __init__(
        self,
        *,
        root: Path,
        session_id: str,
        whole: WavAppender,
        sample_rate: int,
        channels: int,
        segment_frames: int,
        segment_index: int,
        current: WavAppender | None,
        dirty_dirs: set[Path],
    ) -> None:
        """Assemble a recording from open files; use `create` or `resume`."""
        self._root = root
        self._session_id = session_id
        self._whole = whole
        self._sample_rate = sample_rate
        self._channels = channels
        self._segment_frames = segment_frames
        self._segment_index = segment_index  # of `current`, or of the next segment to start
        self._current = current
        self._completed: list[WavAppender] = []
        self._dirty_dirs = dirty_dirs
        self._failed = False
        self._closed = False

    @classmethod
    def create(
        cls, root: Path, session_id: str, sample_rate: int, channels: int, segment_seconds: float
    ) -> Self:
        """Start a session's files under `root`, which must exist, replacing any an earlier attempt left."""
        segment_frames = _segment_frames(session_id, sample_rate, segment_seconds)
        directory = root / session_id
        directory.mkdir(exist_ok=True)
        dirty_dirs = {root}
        if _delete_segments(directory, first=0):
            dirty_dirs.add(directory)
        whole = WavAppender.create(root / f"{session_id}.wav", sample_rate, channels, replace=True)
        return cls(
            root=root,
            session_id=session_id,
            sample_rate=sample_rate,
            channels=channels,
            segment_frames=segment_frames,
            whole=whole,
            segment_index=0,
            current=None,
            dirty_dirs=dirty_dirs,
        )

    @classmethod
    def resume(  # noqa: PLR0917 - callers pass the checkpoint positionally, through asyncio.to_thread
        cls,
        root: Path,
        session_id: str,
        sample_rate: int,
        channels: int,
        segment_seconds: float,
        frames: int,
    ) -> Self:
        """Reopen a session's files to continue after its first `frames` frames (the last checkpoint).

        Audio past `frames` is cut off and segment files past the one holding frame `frames` are
        deleted, so that writing the rest gives files identical to an uninterrupted run. Files that
        hold less than `frames` frames raise `LostDataError`.
        """
        segment_frames = _segment_frames(session_id, sample_rate, segment_seconds)
        if frames < 0:
            raise ValueError(f"frames must be >= 0, got {frames}")
        directory = root / session_id
        dirty_dirs: set[Path] = set()
        if not directory.is_dir():
            if frames:
                raise LostDataError(f"{directory} is missing but {frames} frames were acknowledged")
            directory.mkdir()
            dirty_dirs.add(root)
        index, count = divmod(frames, segment_frames)
        for complete in range(index):
            _check_complete(directory / segment_name(complete), sample_rate, channels, segment_frames)
        if _delete_segments(directory, first=index if count == 0 else index + 1):
            dirty_dirs.add(directory)

        whole_path = root / f"{session_id}.wav"
        if not whole_path.exists():
            dirty_dirs.add(root)
        whole = WavAppender.reopen(whole_path, sample_rate, channels, frames)
        try:
            current = (
                WavAppender.reopen(directory / segment_name(index), sample_rate, channels, count)
                if count
                else None
            )
        except BaseException:
            whole.abandon()
            raise
        return cls(
            root=root,
            session_id=session_id,
            sample_rate=sample_rate,
            channels=channels,
            segment_frames=segment_frames,
            whole=whole,
            segment_index=index,
            current=current,
            dirty_dirs=dirty_dirs,
        )

    @property
    def frames(self) -> int:
        """Frames written so far, whether or not flushed."""
        return self._whole.frames

    @property
    def duration_seconds(self) -> float:
        """Length of the audio written so far."""
        return self.frames / self._sample_rate

    @property
    def file_path(self) -> str:
        """The whole-session file, relative to the storage root."""
        return f"{self._session_id}.wav"

    @property
    def segments(self) -> tuple[str, ...]:
        """The segment files, relative to the storage root, in order; the last may be partial."""
        count = math.ceil(self.frames / self._segment_frames)
        return tuple(f"{self._session_id}/{segment_name(index)}" for index in range(count))

    @property
    def segment_frames(self) -> int:
        """Frames in a complete segment."""
        return self._segment_frames

    def write(self, pcm: Pcm) -> None:
        """Append interleaved s16le frames to the whole file and to the segments they fall in.

        Raises `ValueError` (writing nothing) unless `pcm` is whole frames, and `WavTooLargeError`
        when the whole file would outgrow the WAV format.
        """
        view = memoryview(pcm).cast("B")
        self._ensure_usable()
        self._whole.check_append(len(view))
        step = frame_size(self._channels)
        try:
            self._whole.append(view)
            offset = 0
            while offset < len(view):
                segment = self._start_segment() if self._current is None else self._current
                end = offset + (self._segment_frames - segment.frames) * step
                segment.append(view[offset:end])
                offset = min(end, len(view))
                if segment.frames == self._segment_frames:
                    segment.flush(fsync=False)  # its final header; the next fsyncing flush makes it durable
                    self._completed.append(segment)
                    self._current = None
                    self._segment_index += 1
        except BaseException:
            self._failed = True
            raise

    def flush(self, fsync: bool = True) -> None:
        """Bring every open file's header up to date; with `fsync`, make files and directories durable.

        Once this returns with `fsync`, every frame written so far survives a crash: checkpoint then.
        """
        self._ensure_usable()
        try:
            self._whole.flush(fsync)
            for segment in self._completed:
                segment.flush(fsync)
            if self._current is not None:
                self._current.flush(fsync)
            if fsync:
                for segment in self._completed:
                    segment.close()
                self._completed.clear()
                # A new file is durable only once the directory entry naming it is.
                for directory in sorted(self._dirty_dirs):
                    _fsync_directory(directory)
                self._dirty_dirs.clear()
        except BaseException:
            self._failed = True
            raise

    def close(self) -> None:
        """Flush with fsync and close every file; closing again does nothing.

        After a failed write the files are closed as they are, for `resume` to repair.
        """
        if self._closed:
            return
        try:
            if not self._failed:
                self.flush(fsync=True)
        finally:
            self.abandon()

    def abandon(self) -> None:
        """Close every file without updating headers, as a crash would leave them (buffered audio still
        reaches the OS). For giving up after an error, and for tests."""
        self._closed = True
        for appender in (self._whole, *self._completed, self._current):
            if appender is not None:
                appender.abandon()
        self._completed.clear()
        self._current = None

    def discard(self) -> None:
        """Close and delete the files: a session whose audio is not kept (a call in echo mode)."""
        self.abandon()
        (self._root / self.file_path).unlink(missing_ok=True)
        directory = self._root / self._session_id
        if directory.is_dir():
            _delete_segments(directory, 0)
            directory.rmdir()

    def _start_segment(self) -> WavAppender:
        directory = self._root / self._session_id
        name = segment_name(self._segment_index)
        self._current = WavAppender.create(directory / name, self._sample_rate, self._channels)
        self._dirty_dirs.add(directory)
        return self._current

    def _ensure_usable(self) -> None:
        if self._closed:
            raise ValueError(f"the recording of session {self._session_id} is closed")
        if self._failed:
            raise RuntimeError(
                f"an earlier write to the recording of session {self._session_id} failed and its state is"
                " unknown; resume it from the last checkpoint"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _segment_frames(session_id: str, sample_rate: int, segment_seconds: float) -> int:
    """Validate the arguments that name and cut the files; return frames per segment."""
    try:
        canonical: str | None = str(uuid.UUID(session_id))
    except ValueError:
        canonical = None
    if session_id != canonical:
        # The id becomes a file name: only the canonical form, so nothing can escape the root.
        raise ValueError(f"session id {session_id!r} is not a canonical UUID string")
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    if not (math.isfinite(segment_seconds) and segment_seconds > 0):
        raise ValueError(f"segment length must be a positive number of seconds, got {segment_seconds}")
    frames = round(segment_seconds * sample_rate)
    if frames < 1:
        raise ValueError(f"{segment_seconds} s at {sample_rate} Hz is less than one frame per segment")
    return frames


def _check_complete(path: Path, sample_rate: int, channels: int, segment_frames: int) -> None:
    try:
        held = stored_frames(path, sample_rate, channels)
    except FileNotFoundError:
        held = -1
    if held < segment_frames:
        state = "is missing" if held < 0 else f"holds {held} frames"
        raise LostDataError(
            f"{path} {state} but is a complete segment of {segment_frames} frames by the checkpoint:"
            " acknowledged data was lost (a durability bug)"
        )


def _delete_segments(directory: Path, first: int) -> bool:
    """Delete the segment files numbered `first` and up; whether there were any."""
    deleted = False
    for entry in directory.iterdir():
        match = _SEGMENT_NAME.fullmatch(entry.name)
        if match and int(match[1]) >= first:
            entry.unlink()
            deleted = True
    return deleted


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
