"""Wyoming over plain TCP (`WYOMING_PORT`, default 10700; 0 turns it off): the listener of one
ingest process, and the connections it serves, each a task of its own, driven like a `/ws`
socket (`wyoming_framing` reads the bytes, `WyomingTcpAdapter` the events)."""

import asyncio
import logging
from typing import Any

from voxbus.common.settings import ListenError
from voxbus.ingest.connection import drive
from voxbus.ingest.context import IngestContext
from voxbus.ingest.protocols.base import Opening
from voxbus.ingest.protocols.wyoming import WyomingTcpAdapter
from voxbus.ingest.wyoming_framing import WyomingTcpWire

log = logging.getLogger(__name__)


class WyomingTcpServer:
    def __init__(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self, host: str, port: int) -> None:
        limit = self._ctx.settings.max_message_size_bytes
        try:
            self._server = await asyncio.start_server(self._serve, host, port, limit=limit)
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

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections[task] = writer
        try:
            ctx = self._ctx
            wire = WyomingTcpWire(
                reader,
                writer,
                header_limit=ctx.settings.max_message_size_bytes,
                payload_limit=ctx.max_chunk_bytes,
                write_seconds=ctx.settings.shutdown_timeout_seconds / 4,
            )
            opening = Opening(transport=writer.transport, authenticated=not ctx.settings.api_key)
            await drive(ctx, wire, WyomingTcpAdapter(opening))
        finally:
            writer.close()
            if task is not None:
                del self._connections[task]
