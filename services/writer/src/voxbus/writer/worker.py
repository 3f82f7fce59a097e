"""The writer's batch handler: `voxbus.audio.pcm` records in, WAV files and `finalized` events out.

Durability order per batch: append every chunk → flush and fsync the files → record in the
store how many frames each session's files hold durably (`written_frames`) → finalize stopped
sessions → return offsets for the loop to commit. A crash anywhere in between replays records
from the last commit: a file longer than `written_frames` is cut back to it, and each PCM chunk
carries `pos`, the frame offset of its first sample, so the part of a replayed chunk the file
already holds is skipped, however the replay was chunked. The files end up identical to an
uninterrupted run.

Open files are bounded: at most `max_open` sessions keep their files open (an LRU). The least
recently written one is closed, after its own checkpoint (fsync, then `written_frames`), when
another session needs its files; if more audio comes for it, it is resumed from that checkpoint
like a recording after a restart. A client that connects and drops holds no file for long.

A session whose files cannot be written (the disk is full, a file-size limit, an I/O error) ends
`error` with the reason at the end of the batch, and the other sessions go on: a crash would
replay the batch into the same error for ever, and every session of the partition with it. The
process's own limits (too many open files, no memory) are not the storage's: those fail the
batch, the consumer restarts and replays it, and the session loses nothing.
"""

import asyncio
import contextlib
import errno
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from voxbus.common.bus.base import Bus, ConsumedRecord, TopicPartition
from voxbus.common.constants import Key, SessionStatus
from voxbus.common.records import (
    AudioChunk,
    RecordError,
    SessionError,
    SessionFinalized,
    SessionStart,
    SessionStop,
    decode,
)
from voxbus.common.runtime import session_context
from voxbus.common.session_state import SessionHashes, SessionState, SessionUpdate
from voxbus.common.state import SessionNotice
from voxbus.common.store.base import StateStore
from voxbus.writer import metrics
from voxbus.writer.recording import SessionRecording

log = logging.getLogger(__name__)

_FINISHED_MEMORY = 10_000  # finalized session ids remembered, to skip their replays cheaply
_MAX_OPEN_CEILING = 4096  # the default bound when the open-file limit is huge or unlimited


def default_max_open() -> int:
    """Recordings kept open when `WRITER_MAX_OPEN_RECORDINGS` is unset: a quarter of the open-file
    limit, as a recording holds two files (whole + segment) and the rest of the process needs some."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_OPEN_CEILING
    return max(1, min(_MAX_OPEN_CEILING, soft // 4))


@dataclass(slots=True)
class _Open:
    recording: SessionRecording
    tp: TopicPartition
    frame_bytes: int
    keep: bool = True  # False: the session's audio is not kept (its files stay empty)
    dirty: bool = False
    failed: str | None = None  # why its files could not be written: it ends `error`
    seq: int = 0  # of its latest chunk, and that chunk's arrival: what a failure is announced with
    ts_ns: int = 0


@dataclass(frozen=True, slots=True)
class _Final:
    session_id: str
    seq: int
    ts_ns: int
    status: SessionStatus
    reason: str


class WriteHandler:
    def __init__(
        self,
        bus: Bus,
        store: StateStore,
        *,
        storage: Path,
        segment_seconds: float,
        events_topic: str,
        pod: str,
        max_open: int = _MAX_OPEN_CEILING,
    ) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        self._bus, self._store, self._pod = bus, store, pod
        self._hashes = SessionHashes(store)
        self._storage = storage
        self._segment_seconds = segment_seconds
        self._events_topic = events_topic
        self._max_open = max_open
        self._open: OrderedDict[str, _Open] = OrderedDict()  # least recently written first
        self._opening: set[asyncio.Future[SessionRecording]] = set()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._arrivals: list[int] = []  # ingest times (ns) of the chunks written since the last flush
        self._unopened: dict[str, _Final] = {}  # this batch's sessions whose files could not be opened

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        # Nothing past the last commit is lost: the next owner replays it. Just let go of the files.
        for session_id, state in list(self._open.items()):
            if state.tp in revoked:
                del self._open[session_id]
                try:
                    state.recording.close()
                except Exception:  # one file's trouble must not leave the others open
                    log.exception("closing a recording failed", extra={"session_id": session_id})
                    state.recording.abandon()
        metrics.OPEN.set(len(self._open))

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None

    async def close(self) -> None:
        """Close every file, including any a worker thread is still opening."""
        held = {id(state.recording) for state in self._open.values()}
        for opened in await asyncio.gather(*self._opening, return_exceptions=True):
            if isinstance(opened, SessionRecording) and id(opened) not in held:
                opened.abandon()
        await self.on_partitions_revoked(frozenset(state.tp for state in self._open.values()))

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        finals: list[_Final] = []
        self._arrivals.clear()  # a batch that failed before its flush is replayed: not timed twice
        self._unopened.clear()
        for record in records:
            try:
                item = decode(record.key, record.value, record.headers)
            except RecordError as exc:
                log.warning("skipping a record that is not a voxbus record", extra={"reason": str(exc)})
                continue
            with session_context(item.session_id):
                if isinstance(item, SessionStart | AudioChunk):
                    state = await self._session(item, record.tp)
                    if state is not None and isinstance(item, AudioChunk):
                        self._append(state, item)
                elif isinstance(item, SessionStop | SessionError):
                    status = SessionStatus.COMPLETED if isinstance(item, SessionStop) else SessionStatus.ERROR
                    finals.append(_Final(item.session_id, item.seq, item.ts_ns, status, item.reason))
        await self._checkpoint()
        for final in self._unopened.values():
            with session_context(final.session_id):
                await self._finalize_without_files(final)
        stopping = {final.session_id for final in finals}
        finals += [
            _Final(session_id, state.seq, state.ts_ns, SessionStatus.ERROR, state.failed)
            for session_id, state in self._open.items()
            if state.failed is not None and session_id not in stopping
        ]
        for final in finals:
            with session_context(final.session_id):
                await self._finalize(final)
        metrics.OPEN.set(len(self._open))
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            offsets[record.tp] = max(offsets.get(record.tp, 0), record.offset + 1)
        return offsets

    async def _session(self, item: SessionStart | AudioChunk, tp: TopicPartition) -> _Open | None:
        session_id, fmt = item.session_id, item.format
        state = self._open.get(session_id)
        if state is not None:
            self._open.move_to_end(session_id)
            return state
        if session_id in self._finished or session_id in self._unopened:
            return None
        stored = await self._hashes.read(session_id) or SessionState(session_id=session_id)
        if stored.finalized:
            self._remember_finished(session_id)
            return None
        if stored.written_frames is None:
            await self._hashes.update(session_id, SessionUpdate(sample_rate=fmt.rate, channels=fmt.channels))
        while len(self._open) >= self._max_open:
            await self._close_least_recent()
        try:
            recording = await self._recording(stored, fmt.rate, fmt.channels)
        except OSError as exc:
            reason = _unwritable(exc)
            self._unopened[session_id] = _Final(session_id, item.seq, item.ts_ns, SessionStatus.ERROR, reason)
            return None
        state = self._open[session_id] = _Open(recording, tp, 2 * fmt.channels, keep=stored.record)
        return state

    async def _close_least_recent(self) -> None:
        """Close the least recently written recording after checkpointing it alone: its files are
        made durable first, then the store learns how much they hold, so resuming it later (more
        audio, or its stop) continues exactly there."""
        session_id, state = self._open.popitem(last=False)
        with session_context(session_id):
            try:
                await asyncio.to_thread(state.recording.close)
            except BaseException:
                state.recording.abandon()
                raise
            metrics.EVICTED.inc()
            await self._hashes.update(session_id, _written(state.recording))
            log.debug("closed an idle recording", extra={"frames": state.recording.frames})

    async def _recording(self, state: SessionState, rate: int, channels: int) -> SessionRecording:
        """The session's files as far as the store says they are durable (new if nothing is)."""
        session_id, frames = state.session_id, state.written_frames
        if frames is None:
            return await self._opened_in_thread(
                SessionRecording.create, self._storage, session_id, rate, channels, self._segment_seconds
            )
        log.info("resumed a recording", extra={"frames": frames})
        return await self._opened_in_thread(
            SessionRecording.resume, self._storage, session_id, rate, channels, self._segment_seconds, frames
        )

    async def _opened_in_thread(
        self, open_recording: Callable[..., SessionRecording], *args: Any
    ) -> SessionRecording:
        """Open files in a worker thread. `close()` waits for opens still under way, so a file
        opened while the handler shuts down is closed too."""
        opening = asyncio.ensure_future(asyncio.to_thread(open_recording, *args))
        self._opening.add(opening)
        opening.add_done_callback(self._opening.discard)
        try:
            return await asyncio.shield(opening)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                (await opening).abandon()
            raise

    def _append(self, state: _Open, chunk: AudioChunk) -> None:
        if not state.keep or state.failed is not None:
            return
        state.seq, state.ts_ns = chunk.seq, chunk.ts_ns
        if chunk.pos is None:
            metrics.BAD_CHUNKS.inc()
            log.error("PCM chunk without a position; skipped", extra={"seq": chunk.seq})
            return
        audio, have = chunk.audio, state.recording.frames
        frames = len(audio) // state.frame_bytes
        if chunk.pos + frames <= have:
            metrics.DUPLICATES.inc()  # a replay of audio the file holds already
            return
        if chunk.pos < have:
            audio = audio[(have - chunk.pos) * state.frame_bytes :]
        elif chunk.pos > have:
            metrics.GAPS.inc()
            log.error("PCM gap: audio is missing before this chunk", extra={"pos": chunk.pos, "have": have})
        try:
            state.recording.write(audio)
        except OSError as exc:
            state.failed = _unwritable(exc)
            return
        state.dirty = True
        self._arrivals.append(chunk.ts_ns)
        metrics.BYTES.inc(len(audio))

    async def _checkpoint(self) -> None:
        dirty = [(sid, state) for sid, state in self._open.items() if state.dirty and state.failed is None]
        if not dirty:
            return
        arrivals, self._arrivals = self._arrivals, []
        started = time.perf_counter()
        failures = await asyncio.to_thread(_flush_all, [state.recording for _, state in dirty])
        metrics.FLUSH_SECONDS.observe(time.perf_counter() - started)
        for index, exc in failures.items():
            dirty[index][1].failed = _unwritable(exc)
        dirty = [(sid, state) for sid, state in dirty if state.failed is None]
        durable_ns = time.time_ns()
        for arrived_ns in arrivals:
            metrics.SOCKET_TO_FILE_SECONDS.observe((durable_ns - arrived_ns) / 1e9)
        for session_id, state in dirty:
            state.dirty = False
            await self._hashes.update(session_id, _written(state.recording))

    async def _announce(
        self, final: _Final, file_path: str, duration_seconds: float, segments: Sequence[str]
    ) -> None:
        """The `finalized` event, then the notice a client's close waits for: at least once (again
        for a replayed stop), so a waiter re-reads the session rather than trusting one message."""
        event = SessionFinalized(
            session_id=final.session_id,
            seq=final.seq,
            ts_ns=final.ts_ns,
            file_path=file_path,
            duration_seconds=duration_seconds,
            segments=tuple(segments),
        )
        await self._bus.send_and_wait(self._events_topic, event.to_message())
        await self._store.publish(Key.SESSION_CHANNEL + final.session_id, SessionNotice.FINALIZED)

    async def _finalize(self, final: _Final) -> None:
        state = self._open.pop(final.session_id, None)
        if state is None:
            # the store, not `_finished`: once per session, and a replayed stop must be announced
            stored = await self._hashes.read(final.session_id) or SessionState(session_id=final.session_id)
            if stored.finalized:
                # a replayed stop: the writer that finalized it may have died before announcing it
                # (its offsets were not committed), and a client's close waits for the notice
                await self._announce(final, stored.file_path or "", stored.duration_seconds, stored.segments)
                self._remember_finished(final.session_id)
                return
            # A replayed stop after a restart: its chunks were committed, its files are durable.
            # (A session that never had audio gets an empty file of the default format.)
            fmt = stored.audio_format()
            try:
                recording = await self._recording(stored, fmt.rate, fmt.channels)
            except OSError as exc:
                await self._finalize_without_files(
                    replace(final, status=SessionStatus.ERROR, reason=_unwritable(exc))
                )
                return
            keep = stored.record
        else:
            recording, keep = state.recording, state.keep
            if state.failed is not None:
                final = replace(final, status=SessionStatus.ERROR, reason=state.failed)
        # in the loop, not a thread: nothing may come between taking it out of `_open` and closing
        # it (a cancellation would leave it open); once per session, two fsyncs. After a failed
        # write the files are only closed, as they are
        if keep:
            try:
                recording.close()
            except OSError as exc:
                final = replace(final, status=SessionStatus.ERROR, reason=_unwritable(exc))
        else:
            recording.discard()  # no file to show, and none left on disk
        finalized = SessionUpdate(
            status=final.status,
            finalized=True,
            writer_pod=self._pod,
            file_path=recording.file_path if keep else None,
            segments=recording.segments if keep else (),
            duration_seconds=recording.duration_seconds,
            written_frames=recording.frames,
            updated_at=time.time(),
            # A failed session's reason is its close reason too, whatever stop the client asked
            # for. It is written here, with the status the close reply reads: the transcoder's
            # own write of it follows its output, so it may land after the reply.
            close_reason=final.reason,
            error=final.reason if final.status == SessionStatus.ERROR else None,
        )
        await self._hashes.update(final.session_id, finalized)
        await self._announce(
            final,
            recording.file_path if keep else "",
            recording.duration_seconds,
            recording.segments if keep else (),
        )
        self._remember_finished(final.session_id)
        metrics.FINALIZED.labels(final.status.value).inc()
        log.info(
            "recording finalized",
            extra={"status": final.status.value, "duration_seconds": recording.duration_seconds},
        )

    async def _finalize_without_files(self, final: _Final) -> None:
        """A session whose files could not even be opened ends `error`, with no file to show."""
        failed = SessionUpdate(
            status=SessionStatus.ERROR,
            finalized=True,
            writer_pod=self._pod,
            updated_at=time.time(),
            close_reason=final.reason,
            error=final.reason,
        )
        await self._hashes.update(final.session_id, failed)
        await self._announce(final, "", 0.0, ())
        self._remember_finished(final.session_id)
        metrics.FINALIZED.labels(SessionStatus.ERROR.value).inc()

    def _remember_finished(self, session_id: str) -> None:
        self._finished[session_id] = None
        while len(self._finished) > _FINISHED_MEMORY:
            self._finished.popitem(last=False)


def _written(recording: SessionRecording) -> SessionUpdate:
    """What a checkpoint records: the frames the files hold durably, and their duration."""
    return SessionUpdate(
        written_frames=recording.frames, duration_seconds=recording.duration_seconds, updated_at=time.time()
    )


# the process's own limits, not the storage's: another try (after the consumer's restart) gets past
# them, so the batch fails and is replayed, and no session loses what was acked
_TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EAGAIN, errno.EINTR})


def _unwritable(exc: OSError) -> str:
    """The error a session ends with when its files cannot be written, counted and logged; an
    error of the process's own limits (`_TRANSIENT`) is raised again instead."""
    if exc.errno in _TRANSIENT:
        raise exc
    metrics.WRITE_ERRORS.inc()
    log.error("a recording could not be written", extra={"reason": repr(exc)})
    return f"the recording could not be written: {exc}"


def _flush_all(recordings: list[SessionRecording]) -> dict[int, OSError]:
    """Flush and fsync every recording; the ones that could not be, by index, with the error."""
    failures: dict[int, OSError] = {}
    for index, recording in enumerate(recordings):
        try:
            recording.flush(fsync=True)
        except OSError as exc:
            failures[index] = exc
    return failures
