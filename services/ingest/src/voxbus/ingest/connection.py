"""The WebSocket driver: everything a socket does whatever its protocol.

It authenticates, enforces the message-size limit, the idle timeout and the maximum session
duration, holds the cluster-wide slots, produces audio and acknowledges it in order once it is
durable, delivers egress audio, and lets go of everything on every way out.

Every chunk counted in the session record is in the recording, and every chunk in the recording
is counted: when the server ends a socket (restart, timeout) it first stops reading, so a message
read after that is dropped unanswered, then answers every chunk it did read; a socket that goes
away still counts the chunks that turn out durable. So a resume greeting's `chunk_count` is what
the recording holds, and a client resends every chunk after it (README, "Guarantees and limits").
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from voxbus.common.constants import Key, SessionStatus
from voxbus.common.records import AudioFormat
from voxbus.common.runtime import session_context
from voxbus.common.session_state import SessionState
from voxbus.common.state import SessionNotice
from voxbus.common.store.base import StoreBatch
from voxbus.ingest import metrics
from voxbus.ingest.acks import OnDurable
from voxbus.ingest.auth import authorized
from voxbus.ingest.context import INGEST, IngestContext
from voxbus.ingest.finishing import wait_finished
from voxbus.ingest.protocols.base import Adapter
from voxbus.ingest.sessions import SessionSpec
from voxbus.ingest.stream import RawStream

log = logging.getLogger(__name__)

# a client that reconnects at once may beat its old socket's release (another pod, the close frame
# still on its way, chunks in flight being settled): a resume waits this long, or as long as a
# release may wait for chunks in flight, for the session's connection slot before refusing
RESUME_GRACE_SECONDS = 2.0
RESTART = "restart"
NOT_STORED = "audio not stored"  # a chunk was not durable: the client resumes and sends it again
# how the socket closes when the server stopped reading for one of these (else it is a timeout)
_STOP_CLOSE_CODES = {RESTART: 1012, NOT_STORED: 1011}
MIB = 1024 * 1024  # MAX_CHUNK_SIZE_MB counts these


class SessionRefused(Exception):
    """A session cannot be opened or resumed; `body` and `code` say why to the client."""

    def __init__(self, body: dict[str, Any], code: int) -> None:
        super().__init__(body.get("error", "refused"))
        self.body, self.code = body, code


class Connection:
    """One socket's session, as its adapter sees it."""

    def __init__(self, ctx: IngestContext, ws: web.WebSocketResponse, adapter: Adapter) -> None:
        self.ctx, self.ws, self.adapter = ctx, ws, adapter
        self.connection_id = uuid.uuid4().hex
        self.session_id: str | None = None
        self.chunk_count = 0
        self.stream: RawStream | None = None
        self.finished = False
        self._deadline: float | None = None
        self._acks = ctx.acks.queue(
            adapter.request.transport, self._acknowledged, lambda: self.stop_reading(NOT_STORED)
        )
        self._last_number = 0  # the session-wide number of the last chunk read
        self._progress = (0, 0)  # acknowledged chunks and bytes not yet in the session record
        self.stop_reason: str | None = None  # set when the server stops reading: RESTART, idle, …
        self._reader: asyncio.Task[Any] | None = None
        self._receiving = False  # the reader waits for a message: stopping may cancel that wait
        self._reader_stopped = False
        self.released = asyncio.Event()
        # chunks in flight settle in milliseconds; this bounds the wait when the bus is stuck
        self._settle_seconds = ctx.settings.shutdown_timeout_seconds / 4
        protocol = adapter.protocol  # labels() costs more than the increment: look them up once
        self._chunks_metric = metrics.CHUNKS.labels(protocol)
        self._bytes_metric = metrics.BYTES.labels(protocol)
        self._egress_metric = metrics.EGRESS_BYTES.labels(protocol)

    # -- session lifecycle ------------------------------------------------------------------

    async def open(self, spec: SessionSpec) -> str:
        session_id = await self.ctx.registry.create(spec)
        await self._take(session_id, spec.format, created_at=time.time())
        if self.stream is None:
            raise RuntimeError("no stream after attaching")
        await self.stream.start(protocol=spec.protocol, user_id=spec.user_id, echo=spec.echo, resume=False)
        return session_id

    async def resume(self, session_id: str) -> SessionState:
        state = await self.ctx.registry.read(session_id)
        if state is None or state.status != SessionStatus.ACTIVE:
            raise SessionRefused({"error": "Session not found", "session_id": session_id}, 1008)
        await self._take(session_id, state.audio_format(), created_at=state.created_at)
        # read after claiming the connection slot: a previous socket saves its counters first
        state = await self.ctx.registry.read(session_id) or state
        self.chunk_count = self._last_number = state.chunk_count
        if self.stream is None:
            raise RuntimeError("no stream after attaching")
        await self.stream.start(
            protocol=state.protocol, user_id=state.user_id, echo=state.echo_settings(), resume=True
        )
        return state

    async def _take(self, session_id: str, fmt: AudioFormat, *, created_at: float) -> None:
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
            channel, claimed, max(RESUME_GRACE_SECONDS, self._settle_seconds)
        ):
            raise SessionRefused(
                {
                    "error": "Too many connections for session",
                    "session_id": session_id,
                    "max": settings.max_connections_per_session,
                },
                1008,
            )
        if not await leases.hold_slot(Key.SESSION_SLOTS, session_id, settings.max_concurrent_sessions):
            batch = self.ctx.store.batch()
            leases.drop(batch, connections, self.connection_id)
            await batch.execute()
            raise SessionRefused(
                {"error": "Too many concurrent sessions", "max": settings.max_concurrent_sessions}, 1013
            )
        self.session_id = session_id
        batch = self.ctx.store.batch()
        leases.hold_deadline(
            batch, Key.REAP_AT, session_id, extra_ms=int(settings.connection_timeout_seconds * 1000)
        )
        epoch_at = self.ctx.registry.attach(batch, session_id)
        self.ctx.router.attach(batch, session_id, self._deliver)
        epoch = int((await batch.execute())[epoch_at])
        self.stream = RawStream(self.ctx.bus, self.ctx.raw_topic, session_id, fmt, epoch)
        self._deadline = created_at + settings.max_session_duration_hours * 3600

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
        return await wait_finished(self.ctx, self.session_id) if wait else None

    def stop_reading(self, reason: str) -> None:
        """Read no more messages: one read from now on is dropped unanswered (the client sends it
        again after resuming); the reader then answers what it read and ends as `reason` says."""
        if self.stop_reason is not None:
            return
        self.stop_reason = reason
        if self._receiving and self._reader is not None:
            self._reader_stopped = True
            self._reader.cancel()

    async def restart(self) -> None:
        """Server shutdown: stop reading, answer every chunk read, close with 1012 (bounded)."""
        self.stop_reading(RESTART)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * self._settle_seconds):
                await self.released.wait()
        if not self.ws.closed:  # its reader is busy elsewhere (a close waiting for the file)
            await self.close(1012, "server restarting")

    async def end_stopped(self) -> None:
        """The reader stopped for `stop_reason`. A restart (1012) or a chunk not stored (1011)
        answers every chunk read, then closes: the session stays resumable, and the client
        resends what follows `chunk_count`. A timeout finishes the session."""
        if self.ws.closed:
            return
        reason = self.stop_reason or ""
        code = _STOP_CLOSE_CODES.get(reason)
        if code is None:
            await self.adapter.on_timeout(self, reason)
            return
        try:
            async with asyncio.timeout(self._settle_seconds):
                await self.drain()
        except TimeoutError:
            log.warning("chunks still in flight", extra={"seconds": self._settle_seconds, "stop": reason})
        await self.close(code, "server restarting" if reason == RESTART else reason)

    async def release(self) -> None:
        """On any way out: stop acking, count what turns out durable, save counters, free the
        slots and the route."""
        unsettled = await self._acks.abandon(self._settle_seconds)
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

    # -- wire ------------------------------------------------------------------------------

    async def send_json(self, body: Any) -> None:
        """Strict JSON: a NaN or Infinity in `body` is a bug, not something to put on the wire."""
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(body, allow_nan=False))

    async def send_text(self, text: str) -> None:
        if not self.ws.closed:
            await self.ws.send_str(text)

    async def close(self, code: int, message: str = "") -> None:
        await self.ws.close(code=code, message=message.encode()[:120])

    async def refuse(self, refused: SessionRefused) -> None:
        with contextlib.suppress(ConnectionError):  # a client that left needs no reason
            await self.send_json(refused.body)
            await self.close(refused.code, str(refused.body.get("error", "")))

    def seconds_left(self) -> float | None:
        return None if self._deadline is None else self._deadline - time.time()

    async def _deliver(self, audio: bytes) -> None:
        for message in self.adapter.egress(audio):
            if self.ws.closed:
                return
            if isinstance(message, bytes):
                await self.ws.send_bytes(message)
            else:
                await self.ws.send_str(message)
        self._egress_metric.inc(len(audio))

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


async def serve_socket(
    request: web.Request, make_adapter: Callable[[web.Request], Adapter]
) -> web.StreamResponse:
    ctx = request.app[INGEST]
    adapter = make_adapter(request)
    settings = ctx.settings
    # aiohttp refuses messages over max_msg_size with a bare 1009; up to twice the limit we read
    # them, so the client gets API.md's JSON error first. No permessage-deflate (which the
    # `websockets` library offers by default): audio hardly compresses, and inflating every frame
    # cost ingest 5-15% more CPU per frame
    ws = web.WebSocketResponse(max_msg_size=2 * settings.max_message_size_bytes, heartbeat=30, compress=False)
    await ws.prepare(request)
    if not authorized(settings, request):
        metrics.REFUSED.labels(adapter.protocol, "auth").inc()
        body = adapter.auth_error()
        if body is not None:
            await ws.send_str(json.dumps(body))
        await ws.close(code=adapter.auth_close_code, message=b"Invalid API key")
        return ws
    conn = Connection(ctx, ws, adapter)
    ctx.connections.add(conn)
    metrics.SOCKETS.labels(adapter.protocol).inc()
    try:
        if await adapter.on_open(conn):
            with session_context(conn.session_id or "-"):
                await _read_loop(conn, adapter, settings.connection_timeout_seconds)
    except SessionRefused as refused:
        metrics.REFUSED.labels(adapter.protocol, refused.code).inc()
        await conn.refuse(refused)
    except ConnectionError as exc:  # the client left while we wrote to it: nothing to tell it
        with session_context(conn.session_id or "-"):
            log.info("client gone while being answered", extra={"reason": repr(exc)})
    except Exception:  # API.md: 1011 internal error, after a JSON error message
        with session_context(conn.session_id or "-"):
            log.exception("connection failed")
        metrics.REFUSED.labels(adapter.protocol, 1011).inc()
        await conn.refuse(SessionRefused({"error": "Internal error"}, 1011))
    finally:
        ctx.connections.discard(conn)
        metrics.SOCKETS.labels(adapter.protocol).dec()
        try:
            if conn.session_id is not None and not conn.finished:
                await adapter.on_disconnect(conn)
            await conn.release()
        finally:
            conn.released.set()
    return ws


async def _read_loop(conn: Connection, adapter: Adapter, idle_seconds: float) -> None:
    """Read until the client leaves or the server stops reading; a watchdog enforces the idle
    timeout and maximum duration (arming a timeout around every receive would cost more than the
    rest of a 20 ms frame)."""
    ws, settings = conn.ws, conn.ctx.settings
    limit = settings.max_message_size_bytes
    chunk_limit = conn.ctx.max_chunk_bytes
    last_message = [time.monotonic()]
    conn._reader = asyncio.current_task()

    async def watchdog() -> None:
        while True:
            left = conn.seconds_left()
            idle_left = last_message[0] + idle_seconds - time.monotonic()
            wait = idle_left if left is None else min(idle_left, left)
            if wait <= 0:
                conn.stop_reading("max_duration" if left is not None and left <= idle_left else "idle")
                return
            await asyncio.sleep(wait)

    guard = asyncio.create_task(watchdog(), name=f"watchdog-{conn.connection_id}")
    try:
        while not ws.closed and conn.stop_reason is None:
            conn._receiving = True
            try:
                message = await ws.receive()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                # ours (stop_reading) and nobody else's: a shutdown's cancel must go on
                if not conn._reader_stopped or task is None or task.uncancel() > 0:
                    raise
                break
            finally:
                conn._receiving = False
            if conn.stop_reason is not None:
                break  # read after the server stopped reading: dropped, never answered
            last_message[0] = time.monotonic()
            if message.type == WSMsgType.BINARY:
                if len(message.data) > chunk_limit:
                    await _too_big(conn, len(message.data), chunk_limit, chunk=chunk_limit < limit)
                    return
                await adapter.on_binary(conn, message.data)
            elif message.type == WSMsgType.TEXT:
                if len(message.data) > limit:
                    await _too_big(conn, len(message.data), limit, chunk=False)
                    return
                await adapter.on_text(conn, message.data)
            elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
    finally:
        guard.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await guard
    if conn.stop_reason is not None:
        await conn.end_stopped()


async def _too_big(conn: Connection, size: int, limit: int, *, chunk: bool) -> None:
    """1009 after the JSON error, whichever limit it was: a chunk left out would be a gap in the
    recording, and the session stays resumable for smaller chunks."""
    error = "Chunk too large" if chunk else "Message too large"
    await conn.send_json({"error": error, "size": size, "max_size": limit})
    await conn.close(1009, error)
