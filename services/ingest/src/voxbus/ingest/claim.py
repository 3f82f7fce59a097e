"""What one socket holds of a session: its slots, its stream, its acks and counters.

Claiming takes the session's connection slot (waiting a moment for a previous socket to let
go), then a cluster-wide session slot, then in one round trip the idle deadline, a new epoch and
the egress route. From then on the claim produces the session's audio, acknowledges each chunk
in order once it is durable, and counts what the recording holds. Releasing gives it all back in
the one order a resume elsewhere relies on.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from voxbus.common.client_messages import SessionNotFound, TooManyConnections, TooManySessions
from voxbus.common.constants import Key, SessionStatus
from voxbus.common.principal import Principal
from voxbus.common.records import AudioFormat, EgressAudio, new_session_id
from voxbus.common.state import SessionNotice
from voxbus.common.store.base import StoreBatch
from voxbus.ingest import metrics
from voxbus.ingest.acks import OnDurable
from voxbus.ingest.context import IngestContext
from voxbus.ingest.finishing import wait_finished
from voxbus.ingest.protocols.base import SessionRefused
from voxbus.ingest.sessions import SessionSpec
from voxbus.ingest.stream import RawStream

log = logging.getLogger(__name__)

# a client that reconnects at once may beat its old socket's release (another pod, the close frame
# still on its way, chunks in flight being settled): a resume waits this long, or as long as a
# release may wait for chunks in flight, for the session's connection slot before refusing
RESUME_GRACE_SECONDS = 2.0


class SessionClaim:
    """One socket's hold on its session, from `open`/`resume` until `release`."""

    def __init__(
        self,
        ctx: IngestContext,
        *,
        protocol: str,
        transport: asyncio.BaseTransport | None,
        deliver: Callable[[EgressAudio], Awaitable[None]],
        on_broken: Callable[[], None],
        egress_lead: float = 0.0,
    ) -> None:
        """`deliver` writes the session's egress audio to the socket; `on_broken()` runs once at
        the first chunk that was not durable."""
        self.ctx, self._deliver, self._egress_lead = ctx, deliver, egress_lead
        self.connection_id = uuid.uuid4().hex
        self.session_id: str | None = None
        self.chunk_count = 0
        self.stream: RawStream | None = None
        self.finished = False
        self._deadline: float | None = None
        self._acks = ctx.acks.queue(transport, self._acknowledged, on_broken)
        self._last_number = 0  # the session-wide number of the last chunk read
        self._progress = (0, 0)  # acknowledged chunks and bytes not yet in the session record
        # chunks in flight settle in milliseconds; this bounds the wait when the bus is stuck
        self.settle_seconds = ctx.settings.shutdown_timeout_seconds / 4
        # labels() costs more than the increment: look them up once
        self._chunks_metric = metrics.CHUNKS.labels(protocol)
        self._bytes_metric = metrics.BYTES.labels(protocol)
        self._tenant_bytes_metric = metrics.TENANT_BYTES.labels("-")  # the session's, once known
        self._protocol = protocol

    async def open(self, spec: SessionSpec) -> str:
        # the slots before the record: a session refused for want of one was never opened, and
        # leaves nothing behind (a record written first stayed listed as active, never reaped)
        session_id = new_session_id()
        await self._hold_slots(session_id)
        created_at = await self.ctx.registry.create(session_id, spec)
        await self._attach(session_id, spec.format, created_at=created_at)
        if self.stream is None:
            raise RuntimeError("no stream after attaching")
        await self.stream.start(protocol=spec.protocol, user_id=spec.user_id, echo=spec.echo, resume=False)
        metrics.SESSIONS.labels(self._protocol, "new").inc()
        self._count_tenant(spec.tenant)
        return session_id

    async def resume(self, session_id: str, principal: Principal) -> None:
        state = await self.ctx.registry.read(session_id)
        if state is None or state.status != SessionStatus.ACTIVE or not principal.owns(state.tenant):
            raise SessionRefused(SessionNotFound(session_id=session_id), 1008)
        await self._hold_slots(session_id)
        await self._attach(session_id, state.audio_format(), created_at=state.created_at)
        # read after claiming the connection slot: a previous socket saves its counters first
        state = await self.ctx.registry.read(session_id) or state
        self.chunk_count = self._last_number = state.chunk_count
        if self.stream is None:
            raise RuntimeError("no stream after attaching")
        await self.stream.start(
            protocol=state.protocol, user_id=state.user_id, echo=state.echo_settings(), resume=True
        )
        metrics.SESSIONS.labels(self._protocol, "resumed").inc()
        self._count_tenant(state.tenant)

    def _count_tenant(self, tenant: str) -> None:
        label = tenant or "-"
        metrics.TENANT_SESSIONS.labels(label).inc()
        self._tenant_bytes_metric = metrics.TENANT_BYTES.labels(label)

    async def _hold_slots(self, session_id: str) -> None:
        """The session's connection slot, then a cluster-wide session slot; `SessionRefused`
        (holding neither) when one is not to be had."""
        if self.session_id is not None:  # a socket's next session takes a new claim
            raise RuntimeError("this claim holds a session already")
        settings, leases = self.ctx.settings, self.ctx.leases
        # the connection slot first: its member is ours alone, so a refusal below can give it back
        connections = Key.CONNECTION_SLOTS + session_id

        async def claimed() -> bool:
            return await leases.hold_slot(
                connections, self.connection_id, settings.max_connections_per_session
            )

        # a subscription only when the slot is taken: a new session's is always free
        channel = Key.SESSION_CHANNEL + session_id
        if not await claimed() and not await self.ctx.store.wait_until(
            channel, claimed, max(RESUME_GRACE_SECONDS, self.settle_seconds)
        ):
            raise SessionRefused(
                TooManyConnections(session_id=session_id, max=settings.max_connections_per_session), 1008
            )
        if not await leases.hold_slot(Key.SESSION_SLOTS, session_id, settings.max_concurrent_sessions):
            batch = self.ctx.store.batch()
            leases.drop(batch, connections, self.connection_id)
            await batch.execute()
            raise SessionRefused(TooManySessions(max=settings.max_concurrent_sessions), 1013)
        self.session_id = session_id  # held: `release` gives the slots back

    async def _attach(self, session_id: str, fmt: AudioFormat, *, created_at: float) -> None:
        """In one round trip: the idle deadline, a new epoch and the egress route; then the stream."""
        settings, leases = self.ctx.settings, self.ctx.leases
        batch = self.ctx.store.batch()
        leases.hold_deadline(
            batch, Key.REAP_AT, session_id, extra_ms=int(settings.connection_timeout_seconds * 1000)
        )
        epoch_at = self.ctx.registry.attach(batch, session_id)
        self.ctx.router.attach(batch, session_id, self._deliver, lead=self._egress_lead)
        epoch = int((await batch.execute())[epoch_at])
        self.stream = RawStream(self.ctx.bus, self.ctx.raw_topic, session_id, fmt, epoch)
        self._deadline = created_at + settings.max_session_duration_hours * 3600

    def seconds_left(self) -> float | None:
        """Until the session's maximum duration (None before it was claimed)."""
        return None if self._deadline is None else self._deadline - time.time()

    async def audio(self, data: bytes, on_durable: OnDurable) -> None:
        """Produce a chunk; `on_durable(ok)` runs, in chunk order, once it is on the bus (or failed)."""
        if self.stream is None:
            raise RuntimeError("audio before the session was opened")
        self._last_number += 1
        try:
            delivery = await self.stream.chunk(data, self._last_number)
        except Exception as exc:  # the bus refused it at once: this chunk is not accepted
            log.warning("chunk not accepted", extra={"reason": repr(exc)})
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            delivery = failed
        self._chunks_metric.inc()
        self._bytes_metric.inc(len(data))
        self._tenant_bytes_metric.inc(len(data))
        await self._acks.add(delivery, len(data), on_durable)

    async def drain(self) -> None:
        """Wait until every chunk received so far was acknowledged."""
        await self._acks.drain()
        await self.save_progress()

    async def finish(self, reason: str, *, wait: bool) -> dict[str, Any] | None:
        """Stop the session after its last chunk; with `wait`, return its info once the file is complete."""
        if self.stream is None or self.session_id is None:
            return None
        await self.drain()
        self.finished = True
        await self.ctx.registry.mark_closing(self.session_id, reason)
        await (await self.stream.stop(reason))
        return (await wait_finished(self.ctx, self.session_id)).body() if wait else None

    async def release(self) -> None:
        """On any way out: stop acking, count what turns out durable, save counters, free the
        slots and the route."""
        unsettled = await self._acks.abandon(self.settle_seconds)
        if unsettled:  # they may still land: the record can count fewer chunks than are recorded
            log.warning("chunks in flight when the socket went away", extra={"count": unsettled})
        if self.session_id is None:
            return
        session_id, leases, batch = self.session_id, self.ctx.leases, self.ctx.store.batch()
        # one round trip, in this order: the counters are saved before the connection slot is
        # freed (whoever resumes claims it after us, then reads them); the cluster slot (which
        # counts sessions a socket streams to, or is freed by TTL if we die) before the
        # connection slot, which a resume waits for and then claims both
        self._queue_progress(batch)
        self.ctx.router.detach(batch, session_id, self._deliver)
        leases.drop(batch, Key.SESSION_SLOTS, session_id)
        leases.drop(batch, Key.CONNECTION_SLOTS + session_id, self.connection_id)
        batch.publish(Key.SESSION_CHANNEL + session_id, SessionNotice.CONNECTION_RELEASED)
        if self.finished:
            leases.drop(batch, Key.REAP_AT, session_id)
        else:
            # still active and resumable (a resume claims a slot again) until the idle timeout,
            # when the reaper stops it
            idle_ms = int(self.ctx.settings.connection_timeout_seconds * 1000)
            leases.let_go(batch, Key.REAP_AT, session_id, after_ms=idle_ms)
        await batch.execute()

    def _acknowledged(self, size: int) -> None:
        """A chunk is durable: it counts, in the session record and in the acks that follow (a
        chunk that failed counts nowhere, so `chunk_count` is always what the recording holds)."""
        self.chunk_count += 1
        chunks, received = self._progress
        self._progress = (chunks + 1, received + size)

    async def save_progress(self) -> None:
        """Add the acknowledged chunks and bytes to the session record (on release and close;
        a store write per frame would cost more than the rest of the frame)."""
        batch = self.ctx.store.batch()
        self._queue_progress(batch)
        await batch.execute()

    def _queue_progress(self, batch: StoreBatch) -> None:
        chunks, received = self._progress
        if self.session_id is not None and chunks:
            self._progress = (0, 0)
            self.ctx.registry.add_progress(batch, self.session_id, chunks, received)
