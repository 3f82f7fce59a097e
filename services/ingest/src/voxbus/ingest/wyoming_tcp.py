"""Wyoming over plain TCP (`WYOMING_PORT`, default 10700; 0 turns it off).

Each connection is read in Wyoming's framing (a header line, `data_length` bytes of JSON merged
over its `data`, `payload_length` bytes of payload) and handed to the connection driver as the
messages a WebSocket client of `/ws` sends: the header as one text message, its payload as the
next binary message. So `WyomingTcpAdapter` (the `/ws` adapter) serves both, with the same
sessions, limits and metrics. Header lines and their extra data are bounded by
MAX_MESSAGE_SIZE_BYTES; a payload over the chunk limit is read past in pieces and refused.
"""

import asyncio
import contextlib
import json
import logging
from typing import Any, Final

from aiohttp import WSMessage, WSMsgType

from voxbus.common.client_messages import MessageError
from voxbus.common.settings import ListenError
from voxbus.common.wyoming_events import BrokenFraming, EventHeader, Rejection
from voxbus.ingest import metrics
from voxbus.ingest.connection import drive
from voxbus.ingest.context import IngestContext
from voxbus.ingest.protocols.base import Opening, SessionRefused
from voxbus.ingest.protocols.text import InvalidJson, parse_json
from voxbus.ingest.protocols.wyoming import WyomingTcpAdapter

log = logging.getLogger(__name__)

_CLOSED: Final = WSMessage(WSMsgType.CLOSED, None, None)
_DISCARD_PIECE: Final = 64 * 1024


class FramingError(SessionRefused):
    """The connection's bytes cannot be framed: the client is told why, then it is closed."""

    def __init__(self, code: Rejection, text: str) -> None:
        metrics.REJECTED.labels(WyomingTcpAdapter.protocol, code.value).inc()
        super().__init__(BrokenFraming(error=text, code=code), 1002)


class WyomingTcpWire:
    """A Wyoming TCP connection as the driver's `Wire`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        header_limit: int,
        payload_limit: int,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._header_limit, self._payload_limit = header_limit, payload_limit
        self._payload: int | None = None  # the header just handed over announced this many bytes
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    async def receive(self) -> WSMessage:
        if self.closed:
            return _CLOSED
        try:
            if self._payload is not None:
                size, self._payload = self._payload, None
                return await self._read_payload(size)
            return await self._read_header()
        except (asyncio.IncompleteReadError, ConnectionError):  # the client went away, mid-event or not
            self._closed = True
            return _CLOSED

    async def _read_header(self) -> WSMessage:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            raise FramingError(
                Rejection.HEADER_TOO_LONG, f"no header line ends within {self._header_limit} bytes"
            ) from None
        try:
            fields = parse_json(line.decode())
            header = EventHeader.parse(fields)
        except (InvalidJson, UnicodeDecodeError) as exc:
            raise FramingError(Rejection.INVALID_JSON, f"a header line that is not JSON: {exc}") from None
        except MessageError as exc:
            raise FramingError(Rejection.INVALID_EVENT, f"not a Wyoming event: {exc}") from None
        text = line.decode()
        if header.data_length:
            text = await self._merge_data(fields, header.data_length)
        if header.payload_size:
            self._payload = header.payload_size
        return WSMessage(WSMsgType.TEXT, text, None)

    async def _merge_data(self, fields: dict[str, Any], size: int) -> str:
        """The header with its extra data merged over `data`, as one JSON text."""
        if size > self._header_limit:
            raise FramingError(Rejection.HEADER_TOO_LONG, f"data_length {size} is over {self._header_limit}")
        extra = await self._reader.readexactly(size)
        try:
            merged = parse_json(extra.decode())
        except (InvalidJson, UnicodeDecodeError) as exc:
            raise FramingError(Rejection.INVALID_JSON, f"extra data that is not JSON: {exc}") from None
        if not isinstance(merged, dict):
            raise FramingError(Rejection.INVALID_EVENT, "extra data that is not a JSON object")
        data = fields.get("data")
        fields = {**fields, "data": {**(data if isinstance(data, dict) else {}), **merged}}
        del fields["data_length"]
        text = json.dumps(fields)
        if len(text) > self._header_limit:
            raise FramingError(Rejection.HEADER_TOO_LONG, f"a header over {self._header_limit} bytes")
        return text

    async def _read_payload(self, size: int) -> WSMessage:
        if size <= self._payload_limit:
            return WSMessage(WSMsgType.BINARY, await self._reader.readexactly(size), None)
        # refused by the adapter when it read the header: read past it, never holding it
        while size:
            piece = await self._reader.read(min(size, _DISCARD_PIECE))
            if not piece:
                raise asyncio.IncompleteReadError(b"", size)
            size -= len(piece)
        return WSMessage(WSMsgType.BINARY, b"", None)

    async def send_str(self, data: str) -> None:
        if not self.closed:
            self._writer.write(data.encode() + b"\n")
            await self._writer.drain()

    async def send_bytes(self, data: bytes) -> None:
        if not self.closed:
            self._writer.write(data)
            await self._writer.drain()

    async def close(self, *, code: int, message: bytes) -> bool:
        if self._closed:
            return False
        self._closed = True
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        return True


class WyomingTcpServer:
    """The TCP listener of one ingest process, and the connections it serves (each a task)."""

    def __init__(self, ctx: IngestContext) -> None:
        self._ctx = ctx
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[Any]] = set()

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
        """Stop accepting; wait `timeout` for the connections (shutdown closed them), then cancel."""
        self.stop_accepting()
        tasks = set(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            settings = self._ctx.settings
            wire = WyomingTcpWire(
                reader,
                writer,
                header_limit=settings.max_message_size_bytes,
                payload_limit=self._ctx.max_chunk_bytes,
            )
            opening = Opening(transport=writer.transport, authenticated=not settings.api_key)
            await drive(self._ctx, wire, WyomingTcpAdapter(opening))
        finally:
            writer.close()
            if task is not None:
                self._connections.discard(task)
