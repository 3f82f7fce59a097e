"""The echo service's work: raw audio in, the same bytes to the client's egress partition on time.

For every session whose start record asks for echo, each chunk is due at its ingest time (the
record's `ts` header, wall clock) + the session's delay. One `DueQueue` holds every session's
chunks; one task produces each `ECHO_SEND_AHEAD_MS` before it is due, with a `due` header, and
ingest holds it until then: the time the echo spends in Kafka is not part of its delay error.
A session's due times never go backwards, so its order holds.

Memory is bounded: a session holds at most (delay + 1 s) of its audio, and never more than
`ECHO_MAX_PENDING_BYTES`; past that its oldest chunks are dropped and counted.

Commits: a partition's commit stays at its oldest chunk not yet echoed durably (committed also
while the topic is quiet), so a consumer that takes the partition over (rebalance, crash) sends
what this one had not; the sessions it meets mid-stream are rebuilt from the session record in
the state store. Echoes carry their chunk's seq, and ingest drops one it already delivered, so the
few sent again after a crash do not reach the client twice.
"""

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from voxbus.common.bus.base import Bus, BusError, ConsumedRecord, TopicPartition
from voxbus.common.constants import RecordType
from voxbus.common.records import (
    AudioFormat,
    EgressEncoder,
    RecordError,
    SessionStart,
    chunk_order,
    record_type,
)
from voxbus.common.session_state import SessionHashes
from voxbus.common.store.base import StateStore
from voxbus.common.timer import DueQueue
from voxbus.echo import metrics
from voxbus.echo.routes import RouteCache

log = logging.getLogger(__name__)

_SAMPLE_BYTES = 2  # a bound for every codec: compressed audio is smaller than PCM s16le
_LOG_EVERY = 1000  # overflow drops logged: the first of a session, then one per this many
_ENDS = frozenset({RecordType.STOP, RecordType.ERROR})


class _Progress:
    """One partition's commit point: the oldest chunk not yet echoed durably (or all consumed)."""

    def __init__(self) -> None:
        self._held: deque[int] = deque()
        self._released: set[int] = set()
        self._next: int | None = None

    def consumed(self, offset: int) -> None:
        self._next = offset + 1

    def hold(self, offset: int) -> None:
        self._held.append(offset)

    def release(self, offset: int) -> None:
        self._released.add(offset)

    def commit_point(self) -> int | None:
        held, released = self._held, self._released
        while held and held[0] in released:
            released.discard(held.popleft())
        return held[0] if held else self._next


@dataclass(slots=True)
class _Session:
    session_id: str
    tp: TopicPartition
    delay: float  # seconds
    cap_bytes: int
    egress: EgressEncoder
    pending: deque["_Frame"] = field(default_factory=deque)
    pending_bytes: int = 0
    last_due: float = 0.0
    stopped: bool = False
    overflowed: int = 0


@dataclass(slots=True)
class _Frame:
    session: _Session
    audio: bytes
    ts_ns: int  # the chunk's ingest time, passed on
    seq: int  # the chunk's session seq, passed on: ingest drops an echo it already delivered
    due_ns: int  # when ingest writes it to the socket: ingest time + delay
    offset: int
    progress: _Progress
    dropped: bool = False


class EchoHandler:
    """The consumer-group handler (`BatchHandler`) and, in `run_sender`, the one sending task."""

    def __init__(
        self,
        bus: Bus,
        store: StateStore,
        *,
        egress_topic: str,
        max_pending_bytes: int,
        route_ttl: float,
        send_ahead: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock`: wall-clock seconds, what the records' ingest times (`ts`) are read against."""
        self._bus, self._hashes, self._egress_topic = bus, SessionHashes(store), egress_topic
        self._clock = clock
        self._max_pending_bytes = max_pending_bytes
        self._send_ahead = send_ahead
        self._routes = RouteCache(store, ttl=route_ttl)
        self._queue: DueQueue[_Frame] = DueQueue(clock)
        self._sessions: dict[str, _Session] = {}
        self._skipped: dict[str, str | None] = {}  # not echoed: None (no echo asked) or "gone"
        self._progress: dict[TopicPartition, _Progress] = {}

    # -- consuming ---------------------------------------------------------------------------

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        for record in records:
            progress = self._progress.get(record.tp)
            if progress is None:
                progress = self._progress[record.tp] = _Progress()
            progress.consumed(record.offset)
            kind = record_type(record.headers)
            session_id = (record.key or b"").decode("ascii", "replace")
            if kind == RecordType.CHUNK:
                await self._chunk(record, session_id, progress)
            elif kind == RecordType.START:
                self._start(record)
            elif kind in _ENDS:
                self._stop(session_id)
        return {tp: point for tp, p in self._progress.items() if (point := p.commit_point()) is not None}

    def _start(self, record: ConsumedRecord) -> None:
        try:
            start = SessionStart.from_message(record.key or b"", record.value, record.headers)
        except RecordError as exc:
            log.warning("not a start record: %s", exc, extra={"offset": record.offset})
            return
        session_id = start.session_id
        self._routes.forget(session_id)  # a resume may come through another pod
        if not start.echo.enabled:
            self._skipped[session_id] = None
            return
        self._skipped.pop(session_id, None)
        session = self._sessions.get(session_id)
        if session is None:
            self._sessions[session_id] = self._new_session(
                session_id, record.tp, start.format, start.echo.delay_ms
            )
        else:
            session.stopped = False

    async def _chunk(self, record: ConsumedRecord, session_id: str, progress: _Progress) -> None:
        session = self._sessions.get(session_id)
        if session is None:
            if session_id not in self._skipped:
                await self._load(session_id, record.tp)
            session = self._sessions.get(session_id)
            if session is None:
                if self._skipped.get(session_id) == "gone":
                    metrics.DROPPED.labels("gone").inc()
                return
        try:
            seq, ts_ns = chunk_order(record.headers)
        except RecordError as exc:
            log.warning("chunk not echoed: %s", exc, extra={"session_id": session_id})
            return
        due = max(ts_ns / 1e9 + session.delay, session.last_due)
        session.last_due = due
        frame = _Frame(session, record.value, ts_ns, seq, int(due * 1e9), record.offset, progress)
        progress.hold(record.offset)
        session.pending.append(frame)
        session.pending_bytes += len(record.value)
        metrics.PENDING.inc()
        while session.pending_bytes > session.cap_bytes and len(session.pending) > 1:
            self._overflow(session)
        # produced send-ahead before due, or at once when that time is past (short delays)
        self._queue.push(max(due - self._send_ahead, self._clock()), frame)

    async def _load(self, session_id: str, tp: TopicPartition) -> None:
        """A session met mid-stream (a takeover, a restart): its echo settings from the store."""
        state = await self._hashes.read(session_id)
        if state is None or state.ended:
            self._skipped[session_id] = "gone"
        elif not state.echo:
            self._skipped[session_id] = None
        else:
            fmt, delay_ms = state.audio_format(), state.delay_ms
            self._sessions[session_id] = self._new_session(session_id, tp, fmt, delay_ms)

    def _new_session(self, session_id: str, tp: TopicPartition, fmt: AudioFormat, delay_ms: int) -> _Session:
        per_second = fmt.rate * fmt.channels * _SAMPLE_BYTES
        cap = min(self._max_pending_bytes, int(per_second * (delay_ms / 1000 + 1)))
        return _Session(session_id, tp, delay_ms / 1000, cap, EgressEncoder(session_id))

    def _overflow(self, session: _Session) -> None:
        frame = session.pending.popleft()
        frame.dropped = True
        session.pending_bytes -= len(frame.audio)
        frame.progress.release(frame.offset)
        metrics.PENDING.dec()
        metrics.DROPPED.labels("overflow").inc()
        if session.overflowed % _LOG_EVERY == 0:
            log.warning(
                "echo backlog over its cap: oldest audio dropped",
                extra={"session_id": session.session_id, "cap_bytes": session.cap_bytes},
            )
        session.overflowed += 1

    def _stop(self, session_id: str) -> None:
        self._skipped.pop(session_id, None)
        session = self._sessions.get(session_id)
        if session is not None:
            session.stopped = True
            if not session.pending:
                self._forget(session)

    def _forget(self, session: _Session) -> None:
        del self._sessions[session.session_id]
        self._routes.forget(session.session_id)

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        """What is pending for these partitions is their new owner's to send (from our commit)."""
        for tp in revoked:
            self._progress.pop(tp, None)
        for session in [s for s in self._sessions.values() if s.tp in revoked]:
            for frame in session.pending:
                frame.dropped = True
                metrics.PENDING.dec()
            self._forget(session)
        self._skipped.clear()

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None

    # -- sending -----------------------------------------------------------------------------

    async def run_sender(self) -> None:
        await self._queue.run(self._send_due)

    async def _send_due(self, due: list[tuple[float, _Frame]]) -> None:
        for when, frame in due:
            if frame.dropped:
                continue
            session = frame.session
            session.pending.popleft()
            session.pending_bytes -= len(frame.audio)
            metrics.PENDING.dec()
            await self._send(when, frame)
            if session.stopped and not session.pending and self._sessions.get(session.session_id) is session:
                self._forget(session)

    async def _send(self, when: float, frame: _Frame) -> None:
        session_id = frame.session.session_id
        partition = await self._routes.partition(session_id)
        if partition is None:  # no socket holds the session now
            metrics.DROPPED.labels("no_route").inc()
            frame.progress.release(frame.offset)
            return
        message = frame.session.egress.message(
            frame.audio, ts_ns=frame.ts_ns, seq=frame.seq, due_ns=frame.due_ns
        )
        try:
            delivery = await self._bus.send(self._egress_topic, message, partition=partition)
        except BusError as exc:
            log.warning("echo not produced: %s", exc, extra={"session_id": session_id})
            metrics.DROPPED.labels("failed").inc()
            frame.progress.release(frame.offset)
            return
        metrics.DELAY_ERROR.observe(self._clock() - when)
        metrics.FRAMES.inc()
        delivery.add_done_callback(partial(_delivered, frame))


def _delivered(frame: _Frame, delivery: "asyncio.Future[object]") -> None:
    if delivery.cancelled() or delivery.exception() is not None:
        log.warning(
            "echo not delivered: %r",
            None if delivery.cancelled() else delivery.exception(),
            extra={"session_id": frame.session.session_id},
        )
        metrics.DROPPED.labels("failed").inc()
    frame.progress.release(frame.offset)
