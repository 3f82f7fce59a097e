"""The connection driver: everything a socket does whatever its protocol.

`serve_socket` takes a WebSocket upgrade and authenticates it; `drive` serves any `Wire` (the
WebSocket itself, or a Wyoming TCP connection) for its adapter. The driver enforces the
message-size limit, the idle timeout and the maximum session duration, reads messages for its
adapter, delivers egress audio, hands the adapter a close request from outside
(`close_requests`), and ends the socket as the way out requires. What the
socket holds of its session (slots, stream, acks, counters) is its `SessionClaim`, released on
every way out.

Every chunk counted in the session record is in the recording, and every chunk in the recording
is counted: when the server ends a socket (restart, timeout) it first stops reading, so a message
read after that is dropped unanswered, then answers every chunk it did read; a socket that goes
away still counts the chunks that turn out durable. So a resume greeting's `chunk_count` is what
the recording holds, and a client resends every chunk after it (README, "Guarantees and limits").
"""

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any, Protocol

from aiohttp import WSMessage, WSMsgType, web

from voxbus.common.call_events import CallEvent
from voxbus.common.client_messages import (
    ChunkTooLarge,
    ClientMessage,
    InternalError,
    InvalidApiKey,
    MessageTooLarge,
)
from voxbus.common.http_bodies import ErrorBody
from voxbus.common.principal import Principal
from voxbus.common.records import AudioFormat, EgressAudio
from voxbus.common.runtime import session_context, tag_session
from voxbus.common.settings import Settings
from voxbus.common.store.base import StoreError
from voxbus.ingest import metrics
from voxbus.ingest.acks import OnDurable
from voxbus.ingest.claim import SessionClaim
from voxbus.ingest.close_requests import next_close_request
from voxbus.ingest.context import INGEST, IngestContext
from voxbus.ingest.protocols.base import Adapter, Opening, SessionRefused, auth_refusal
from voxbus.ingest.sessions import SessionSpec

log = logging.getLogger(__name__)

RESTART = "restart"
NOT_STORED = "audio not stored"  # a chunk was not durable: the client resumes and sends it again
# how the socket closes when the server stopped reading for one of these (else it is a timeout)
_STOP_CLOSE_CODES = {RESTART: 1012, NOT_STORED: 1011}
MIB = 1024 * 1024  # MAX_CHUNK_SIZE_MB counts these


class Wire(Protocol):
    """A client connection as the driver reads and writes it: what it uses of aiohttp's
    `WebSocketResponse` (which is one), so a WebSocket costs no wrapper per message."""

    @property
    def closed(self) -> bool: ...

    async def receive(self) -> WSMessage:
        """The next TEXT or BINARY message; CLOSED (or CLOSE, CLOSING, ERROR) at the end."""

    async def send_str(self, data: str) -> None: ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, *, code: int, message: bytes) -> bool: ...


class SocketConnection:
    """One socket: its adapter's `Connection`, its reader's state, and its session claim."""

    def __init__(self, ctx: IngestContext, wire: Wire, adapter: Adapter) -> None:
        self.ctx, self.wire, self.adapter = ctx, wire, adapter
        self.claim = self._new_claim()
        self.stop_reason: str | None = None  # set when the server stops reading: RESTART, idle, …
        self._reader: asyncio.Task[Any] | None = None
        self._receiving = False  # the reader waits for a message: stopping may cancel that wait
        self._reader_stopped = False
        self.released = asyncio.Event()
        self._close_requests: asyncio.Task[None] | None = None  # from `hear_close_requests` on
        self._ending_from_outside = False  # that task answers one: it ends the socket, uncut
        self._egress_metric = metrics.EGRESS_BYTES.labels(adapter.protocol)
        self._egress_dropped = metrics.EGRESS_DROPPED.labels(adapter.protocol)
        self.deadline_changed = asyncio.Event()  # a session was claimed: the watchdog looks again
        self._sessions_claimed = 0  # sessions this socket opened or resumed (or tried to)

    # -- the session, as the adapter asks for it (protocols.base.Connection) -----------------

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def session_id(self) -> str | None:
        return self.claim.session_id

    @property
    def chunk_count(self) -> int:
        return self.claim.chunk_count

    @property
    def finished(self) -> bool:
        return self.claim.finished

    @property
    def session_format(self) -> AudioFormat | None:
        stream = self.claim.stream
        return None if stream is None else stream.format

    @property
    def chunk_limit(self) -> int:
        return self.ctx.max_chunk_bytes

    def _new_claim(self) -> SessionClaim:
        return SessionClaim(
            self.ctx,
            protocol=self.adapter.protocol,
            transport=self.adapter.opening.transport,
            deliver=self._deliver,
            on_broken=lambda: self.stop_reading(NOT_STORED),
            egress_lead=self.adapter.egress_lead,
        )

    async def authenticate(self, key: str | None) -> Principal | None:
        return await self.ctx.keys.principal(key)

    async def open(self, spec: SessionSpec) -> str:
        """A new session, its key's tenant's."""
        principal = await self._principal()
        session_id = await self.claim.open(replace(spec, tenant=principal.session_tenant))
        self._claimed(session_id)
        return session_id

    async def resume(self, session_id: str) -> None:
        """Another tenant's session is not found, as one that never was."""
        await self.claim.resume(session_id, await self._principal())
        self._claimed(session_id)

    async def _principal(self) -> Principal:
        """Who the socket's next session is for. Its key was looked up when the socket (or, over
        Wyoming's TCP, its first audio-start) presented it; each later session on the same socket
        asks again, so a key revoked meanwhile opens and resumes nothing more."""
        principal = self.adapter.principal
        if principal is None:  # a connection is refused before it can open or resume anything
            raise RuntimeError("no authenticated principal")
        if self._sessions_claimed and not await self.ctx.keys.still_valid(principal):
            raise SessionRefused(InvalidApiKey(), 1008)
        self._sessions_claimed += 1
        return principal

    def _claimed(self, session_id: str) -> None:
        """The session is this socket's: every log line of its reader names it, a close request
        from outside reaches the adapter, and the watchdog counts down to its maximum duration."""
        tag_session(session_id)
        self.hear_close_requests()
        self.deadline_changed.set()

    async def end_session(self) -> None:
        if self._ending_from_outside:
            return
        await self.ignore_close_requests()
        self._close_requests = None
        await self.claim.release()
        self.claim = self._new_claim()
        tag_session("-")

    async def audio(self, data: bytes, on_durable: OnDurable) -> None:
        await self.claim.audio(data, on_durable)

    async def finish(self, reason: str, *, wait: bool) -> dict[str, Any] | None:
        return await self.claim.finish(reason, wait=wait)

    async def ignore_close_requests(self) -> bool:
        task = self._close_requests
        if self._ending_from_outside:
            return False
        if task is None or task.done():
            return True
        task.cancel()
        # a cancel of this task meanwhile is not passed on: aiohttp's handler_cancellation cancels
        # the handler when its client's connection is lost, and what follows must still finish
        # or release the session (the client's close, `serve_socket`'s way out)
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return not self._ending_from_outside

    # -- close requests from outside the socket ----------------------------------------------

    def hear_close_requests(self) -> None:
        """From now on the first close request from outside (`POST …/close`, the pipeline's end)
        goes to the adapter's `on_close_request`, in a task of this socket's, while it reads on."""
        if self._close_requests is not None and not self._close_requests.done():
            raise RuntimeError("a close request of the socket's session is still heard or answered")
        if self.session_id is not None:
            self._close_requests = asyncio.create_task(
                self._answer_close_request(self.session_id), name=f"control-{self.session_id}"
            )

    @property
    def ending_from_outside(self) -> bool:
        """A close request from outside is being answered: it finishes the session."""
        return self._ending_from_outside

    async def close_requests_done(self) -> None:
        """The socket ended: stop listening, and wait for an answer under way. A cancel of this
        task (shutdown) is passed on, but not to the answer: cut short, it could leave its
        session closing with no stop record sent (its waits are bounded by the close timeouts,
        and a server that exits cancels what is left)."""
        await self.ignore_close_requests()
        task = self._close_requests
        if task is not None and not task.cancelled():
            await asyncio.shield(task)  # its result, or its error

    async def _answer_close_request(self, session_id: str) -> None:
        try:
            reason = await next_close_request(self.ctx, session_id, finished=lambda: self.finished)
            if reason is None:
                return
            self._ending_from_outside = True
            await self.adapter.on_close_request(self, reason)
        except ConnectionError as exc:  # the client left while we wrote to it
            log.info("client gone while being answered", extra={"reason": repr(exc)})
        except Exception:  # as serve_socket's: 1011 internal error, after a JSON error message
            self._ending_from_outside = True
            log.exception("answering a close request failed")
            metrics.REFUSED.labels(self.adapter.protocol, 1011).inc()
            await self.refuse(SessionRefused(InternalError(), 1011))

    # -- ending the socket -------------------------------------------------------------------

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
        """Server shutdown: stop reading, answer every chunk read, close with 1012 (bounded).
        A socket asked again (the runtime's shutdown asks twice) was waited for already."""
        if self.stop_reason == RESTART:
            return
        self.stop_reading(RESTART)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * self.claim.settle_seconds):
                await self.released.wait()
        if not self.wire.closed:  # its reader is busy elsewhere (a close waiting for the file)
            try:
                async with asyncio.timeout(self.claim.settle_seconds):
                    await self.close(1012, "server restarting")
            except (TimeoutError, ConnectionError):  # a client that reads nothing holds no shutdown
                self.abort()

    def abort(self) -> None:
        """Drop the connection without a goodbye (a client that stopped reading)."""
        transport = self.adapter.opening.transport
        if isinstance(transport, asyncio.Transport):
            transport.abort()

    def writes_backed_up(self) -> bool:
        """What the server wrote waits in the send buffer: the client is not reading. Any byte
        waiting counts, not a high-water mark: the write that crosses one makes aiohttp wait for
        the client to drain, and the pod's one egress router would wait with it."""
        transport = self.adapter.opening.transport
        return isinstance(transport, asyncio.WriteTransport) and transport.get_write_buffer_size() > 0

    async def end_stopped(self) -> None:
        """The reader stopped for `stop_reason`. A restart (1012) or a chunk not stored (1011)
        answers every chunk read, then closes: the session stays resumable, and the client
        resends what follows `chunk_count`. A timeout finishes the session."""
        if self.wire.closed:
            return
        reason = self.stop_reason or ""
        code = _STOP_CLOSE_CODES.get(reason)
        if code is None:
            await self.adapter.on_timeout(self, reason)
            return
        settle_seconds = self.claim.settle_seconds
        try:
            async with asyncio.timeout(settle_seconds):
                await self.claim.drain()
        except TimeoutError:
            log.warning("chunks still in flight", extra={"seconds": settle_seconds, "stop": reason})
        await self.close(code, "server restarting" if reason == RESTART else reason)

    # -- wire ------------------------------------------------------------------------------

    async def send(self, message: ClientMessage) -> None:
        if not self.wire.closed:
            await self.wire.send_str(self.adapter.render(message))

    async def send_text(self, text: str) -> None:
        if not self.wire.closed:
            await self.wire.send_str(text)

    async def close(self, code: int, message: str = "") -> None:
        closing = self.adapter.closing_message(code, message)
        if closing is not None:
            with contextlib.suppress(ConnectionError):
                await self.send(closing)
        await self._close_wire(code, message)

    async def _close_wire(self, code: int, message: str) -> None:
        # a close frame's reason takes 123 bytes: cut on a character boundary, it stays UTF-8
        await self.wire.close(code=code, message=message.encode()[:120].decode(errors="ignore").encode())

    async def refuse(self, refused: SessionRefused) -> None:
        with contextlib.suppress(ConnectionError):  # a client that left needs no reason
            await self.send(refused.reply)
            await self._close_wire(refused.code, refused.reply.error)

    async def send_binary(self, data: bytes) -> None:
        if not self.wire.closed:
            await self.wire.send_bytes(data)

    async def publish(self, event: CallEvent) -> None:
        try:
            await (await self.ctx.bus.send(self.ctx.events_topic, event.to_message()))
        except Exception as exc:  # an event lost is logged; the call's audio goes on
            log.warning(
                "call event not published", extra={"event": type(event).__name__, "reason": repr(exc)}
            )

    async def _deliver(self, egress: EgressAudio) -> None:
        """Egress from the pod's one egress router, which every socket of the pod waits behind:
        a send to a client whose send buffer is full would wait until it reads, so while what
        was sent to it before is still unsent, the audio is dropped (and counted) instead."""
        if self.wire.closed:
            return
        if self.writes_backed_up():
            self._egress_dropped.inc(len(egress.audio))
            return
        if await self.adapter.on_egress(self, egress):
            self._egress_metric.inc(len(egress.audio))


async def serve_socket(request: web.Request, adapter_class: type[Adapter]) -> web.StreamResponse:
    ctx = request.app[INGEST]
    settings = ctx.settings
    refused = adapter_class.refuse_upgrade(settings, request)
    if refused is not None:
        metrics.REFUSED.labels(adapter_class.protocol, "auth").inc()
        return refused
    try:
        principal = await adapter_class.authenticate(ctx.keys, request)
    except StoreError as exc:  # a tenant key could not be looked up: refused before the upgrade
        log.warning("a key could not be looked up", extra={"reason": str(exc)})
        metrics.REFUSED.labels(adapter_class.protocol, "auth").inc()
        unavailable = ErrorBody(error="State store unavailable").response(503)
        unavailable.headers["Retry-After"] = "1"
        return unavailable
    opening = Opening(
        query=request.query, match_info=request.match_info, transport=request.transport, principal=principal
    )
    adapter = adapter_class(opening)
    # aiohttp refuses messages over max_msg_size with a bare 1009; up to twice the limit we read
    # them, so the client gets docs/api.md's JSON error first. No permessage-deflate (which the
    # `websockets` library offers by default): audio hardly compresses, and inflating every frame
    # cost ingest 5-15% more CPU per frame
    ws = web.WebSocketResponse(max_msg_size=2 * settings.max_message_size_bytes, heartbeat=30, compress=False)
    await ws.prepare(request)
    refusal = auth_refusal(principal)
    if refusal is not None:
        metrics.REFUSED.labels(adapter.protocol, "auth").inc()
        reply = adapter.auth_error(refusal)
        if reply is not None:
            await ws.send_str(adapter.render(reply))
        await ws.close(code=adapter.auth_close_code, message=refusal.error.encode())
        return ws
    await drive(ctx, ws, adapter)
    return ws


async def drive(ctx: IngestContext, wire: Wire, adapter: Adapter) -> None:
    """Serve one client connection, authenticated, until it ends; its session released."""
    conn = SocketConnection(ctx, wire, adapter)
    ctx.connections.add(conn)
    metrics.SOCKETS.labels(adapter.protocol).inc()
    try:
        # the session's id (once there is one) on every log line, its close requests heard
        with session_context("-"):
            if await adapter.on_open(conn):
                await _read_loop(conn, adapter, ctx.settings.connection_timeout_seconds)
    except SessionRefused as refused:
        metrics.REFUSED.labels(adapter.protocol, refused.code).inc()
        await conn.refuse(refused)
    except ConnectionError as exc:  # the client left while we wrote to it: nothing to tell it
        with session_context(conn.session_id or "-"):
            log.info("client gone while being answered", extra={"reason": repr(exc)})
    except Exception:  # docs/api.md: 1011 internal error, after a JSON error message
        with session_context(conn.session_id or "-"):
            log.exception("connection failed")
        metrics.REFUSED.labels(adapter.protocol, 1011).inc()
        await conn.refuse(SessionRefused(InternalError(), 1011))
    finally:
        ctx.connections.discard(conn)
        metrics.SOCKETS.labels(adapter.protocol).dec()
        try:
            await conn.ignore_close_requests()
            if conn.session_id is not None and not conn.finished and not conn.ending_from_outside:
                await adapter.on_disconnect(conn)
            await conn.claim.release()
        finally:
            conn.released.set()
            try:
                await conn.close_requests_done()
            finally:
                await adapter.on_end(conn)


async def _read_loop(conn: SocketConnection, adapter: Adapter, idle_seconds: float) -> None:
    """Read until the client leaves or the server stops reading; a watchdog enforces the idle
    timeout and maximum duration (arming a timeout around every receive would cost more than the
    rest of a 20 ms frame)."""
    wire, settings = conn.wire, conn.ctx.settings
    limit = settings.max_message_size_bytes
    chunk_limit = conn.ctx.max_chunk_bytes
    last_message = [time.monotonic()]
    conn._reader = asyncio.current_task()
    guard = asyncio.create_task(
        _watchdog(conn, last_message, idle_seconds), name=f"watchdog-{conn.claim.connection_id}"
    )
    try:
        while not wire.closed and conn.stop_reason is None:
            conn._receiving = True
            try:
                message = await wire.receive()
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
                    await _too_large(conn, adapter, message.data, chunk_limit, chunk=chunk_limit < limit)
                    continue
                await adapter.on_binary(conn, message.data)
            elif message.type == WSMsgType.TEXT:
                if len(message.data) > limit:
                    await _too_large(conn, adapter, message.data, limit, chunk=False)
                    continue
                await adapter.on_text(conn, message.data)
            elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                return
    finally:
        guard.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await guard
    if conn.stop_reason is not None:
        await conn.end_stopped()


async def _watchdog(conn: SocketConnection, last_message: list[float], idle_seconds: float) -> None:
    """Stop the reader at the idle timeout (`last_message[0]` is when the last message came) or
    the session's maximum duration, whichever is first; a session claimed meanwhile is looked at
    at once."""
    while True:
        left = conn.claim.seconds_left()
        idle_left = last_message[0] + idle_seconds - time.monotonic()
        wait = idle_left if left is None else min(idle_left, left)
        if wait <= 0:
            conn.stop_reading("max_duration" if left is not None and left <= idle_left else "idle")
            # a reader blocked writing to a client that reads nothing never sees the stop: given
            # time to end (this task is cancelled when it does), the connection is cut
            await asyncio.sleep(conn.claim.settle_seconds)
            if conn.writes_backed_up():
                conn.abort()
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await conn.deadline_changed.wait()
        conn.deadline_changed.clear()


async def _too_large(
    conn: SocketConnection, adapter: Adapter, data: str | bytes, limit: int, *, chunk: bool
) -> None:
    reply = (ChunkTooLarge if chunk else MessageTooLarge)(size=len(data), max_size=limit)
    await adapter.on_too_large(conn, reply, data)
