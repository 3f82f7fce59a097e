"""Wyoming's byte framing on a TCP connection, as the connection driver's `Wire`.

Each event is read as Wyoming frames it (a header line, `data_length` bytes of JSON merged over
its `data`, `payload_length` bytes of payload) and handed over as the messages a WebSocket client
of `/ws` sends: the header as one text message, its payload as the next binary message. So one
adapter (`protocols/wyoming.py`) serves both framings. A header line, and a header with its extra
data merged, are bounded by MAX_MESSAGE_SIZE_BYTES; a payload over the chunk limit is read past
in pieces (the adapter refused it from its header) and handed over empty. Bytes that cannot be
framed end the connection: nothing after them can be.

Writes are bounded in time: a client that stops reading is dropped rather than holding the
server (its reader, or its shutdown) for ever.
"""

import asyncio
import json
from typing import Any, Final

from aiohttp import WSMessage, WSMsgType

from voxbus.common.client_messages import MessageError
from voxbus.common.wyoming_events import BrokenFraming, EventHeader, Rejection
from voxbus.ingest import metrics
from voxbus.ingest.protocols.base import SessionRefused
from voxbus.ingest.protocols.text import InvalidJson, parse_json
from voxbus.ingest.protocols.wyoming import TCP_PROTOCOL

_CLOSED: Final = WSMessage(WSMsgType.CLOSED, None, None)
_DISCARD_PIECE: Final = 64 * 1024


class FramingError(SessionRefused):
    """The connection's bytes cannot be framed: the client is told why, then it is closed."""

    def __init__(self, code: Rejection, text: str) -> None:
        super().__init__(BrokenFraming(error=text, code=code), 1002)
        self.rejection = code


class WyomingTcpWire:
    """A Wyoming TCP connection as the driver's `Wire`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        header_limit: int,
        payload_limit: int,
        write_seconds: float,
    ) -> None:
        self._reader, self._writer = reader, writer
        self._header_limit, self._payload_limit = header_limit, payload_limit
        self._write_seconds = write_seconds
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
        except FramingError as exc:
            metrics.REJECTED.labels(TCP_PROTOCOL, exc.rejection.value).inc()
            raise

    async def _read_header(self) -> WSMessage:
        try:
            line = await self._reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            line = b""
        if not line or len(line) > self._header_limit:  # the limit counts the newline, as /ws's does
            raise FramingError(
                Rejection.HEADER_TOO_LONG, f"no header line ends within {self._header_limit} bytes"
            )
        try:
            fields = parse_json(line.decode())
            header = EventHeader.parse(fields)
        except (InvalidJson, UnicodeDecodeError) as exc:
            raise FramingError(Rejection.INVALID_JSON, f"a header line that is not JSON: {exc}") from None
        except MessageError as exc:
            raise FramingError(Rejection.INVALID_EVENT, f"not a Wyoming event: {exc}") from None
        # the adapter parses the header again, as it does a /ws text message: one code path for
        # both framings, for a JSON parse of about a hundred bytes per event
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
        while size:  # refused from its header: read past it, never holding it
            piece = await self._reader.read(min(size, _DISCARD_PIECE))
            if not piece:
                raise asyncio.IncompleteReadError(b"", size)
            size -= len(piece)
        return WSMessage(WSMsgType.BINARY, b"", None)

    async def send_str(self, data: str) -> None:
        await self._write(data.encode() + b"\n")

    async def send_bytes(self, data: bytes) -> None:
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        if self.closed:
            return
        self._writer.write(data)
        try:
            async with asyncio.timeout(self._write_seconds):
                await self._writer.drain()
        except TimeoutError:
            self._abort()
            raise ConnectionResetError("the client reads nothing: dropped") from None

    async def close(self, *, code: int, message: bytes) -> bool:
        if self._closed:
            return False
        self._closed = True
        self._writer.close()
        try:
            async with asyncio.timeout(self._write_seconds):
                await self._writer.wait_closed()
        except (TimeoutError, ConnectionError):
            self._abort()
        return True

    def _abort(self) -> None:
        self._closed = True
        self._writer.transport.abort()
