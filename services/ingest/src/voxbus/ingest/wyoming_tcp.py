"""Wyoming over plain TCP (`WYOMING_PORT`, default 10700; 0 turns it off): the listener of one
ingest process, and the connections it serves, each a task of its own, driven like a `/ws`
socket (`wyoming_framing` reads the bytes, `WyomingTcpAdapter` the events).

What a connection may hold is bounded before anything else: a header line and its extra data
take at most `HEADER_LIMIT` (an audio event's header is a hundred bytes), so the reader's buffer
stays small; with API_KEY set, a connection must present the key (`audio-start`'s `token`, its
first event) within `AUTH_SECONDS`, or it is dropped: a client without the key holds nothing
for long. (A WebSocket presents its key with its upgrade.)"""

import asyncio
import logging
from typing import Any, Final

from voxbus.common.principal import OPERATOR
from voxbus.common.settings import ListenError
from voxbus.ingest.connection import drive
from voxbus.ingest.context import IngestContext
from voxbus.ingest.protocols.base import Opening
from voxbus.ingest.protocols.wyoming import WyomingTcpAdapter
from voxbus.ingest.wyoming_framing import WyomingTcpWire

log = logging.getLogger(__name__)

HEADER_LIMIT: Final = 64 * 1024  # a header line, and its extra data (or MAX_MESSAGE_SIZE_BYTES if less)
AUTH_SECONDS: Final = 10.0
_BACKLOG: Final = 1024  # connections the kernel queues before they are accepted (asyncio's is 100)


class WyomingTcpServer:
    def __init__(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> None:
        limit = self._header_limit()
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=limit, backlog=_BACKLOG)
        except OSError as exc:
            what, setting = "Wyoming over TCP", "WYOMING_PORT (0 turns it off)"
            raise ListenError.on(host, port, exc, what, setting) from exc
        log.info("wyoming tcp listening", extra={"host": host, "port": port})

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close()

    async def stop(self, timeout: float) -> None:
        """Stop accepting; wait `timeout` for the connections (shutdown closed them), then drop
        what is left."""
        self.stop_accepting()
        if self._connections:
            _, pending = await asyncio.wait(set(self._connections), timeout=timeout)
            for task in pending:
                self._connections[task].transport.abort()
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    def _header_limit(self) -> int:
        return min(HEADER_LIMIT, self._ctx.settings.max_message_size_bytes)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        ctx = self._ctx
        adapter = WyomingTcpAdapter(
            # with API_KEY set, the key comes in audio-start
            Opening(principal=None if ctx.settings.api_key else OPERATOR, transport=writer.transport)
        )
        deadline = None
        if not adapter.authenticated:
            dropping = _drop_unless_authenticated(adapter, writer)
            deadline = asyncio.create_task(dropping, name="wyoming-key-deadline")
        try:
            wire = WyomingTcpWire(
                reader,
                writer,
                header_limit=self._header_limit(),
                payload_limit=ctx.max_chunk_bytes,
                write_seconds=ctx.settings.shutdown_timeout_seconds / 4,
            )
            await drive(ctx, wire, adapter)
        finally:
            if deadline is not None:
                deadline.cancel()
                await asyncio.wait([deadline])
            writer.close()
            if task is not None:
                del self._connections[task]


async def _drop_unless_authenticated(adapter: WyomingTcpAdapter, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(AUTH_SECONDS)
    if not adapter.authenticated:
        log.info("connection dropped: no key within the time allowed", extra={"seconds": AUTH_SECONDS})
        writer.transport.abort()
