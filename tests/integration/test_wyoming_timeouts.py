"""Wearables and the connection's clocks (embedded): the idle timeout and the maximum session
duration end a wearable's session when they say, whatever the connection is doing then.

Found by probing a running server: a client that stops reading while the server writes to it
(its pongs, its error events) kept the connection, and its session, past the idle timeout for as
long as it kept the socket open; and a session opened by `audio-start` on a connection that was
already open was stopped at its maximum duration only when the idle timeout was next checked."""

import asyncio
import contextlib
import json
import socket
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.helpers import eventually, free_port
from tests.servers import embedded_app
from tests.wearable import event, start
from voxbus.common.constants import Key
from voxbus.common.runtime import STORE
from voxbus.ingest.context import INGEST

_PING = json.dumps({"type": "ping", "data": {"text": "x" * 16_000}}).encode() + b"\n"
_FILL_LIMIT = 256 * 1024 * 1024  # bytes of pings at most: the server stops reading long before


async def _write_until_the_server_stops_reading(writer: asyncio.StreamWriter) -> None:
    """Pings, never reading the pongs, until the server no longer reads what we send (or, its
    idle timeout come meanwhile, closed the connection)."""
    sent = 0
    while sent < _FILL_LIMIT:
        try:
            writer.write(_PING * 16)
            sent += len(_PING) * 16
            async with asyncio.timeout(2):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return
    raise AssertionError(f"the server read {sent} bytes of pings without its pongs being read")


async def test_a_tcp_client_that_stops_reading_is_closed_at_the_idle_timeout(tmp_path: Path) -> None:
    port = free_port()
    async with embedded_app(tmp_path, wyoming_port=port, connection_timeout_seconds=1.0) as (_, app):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # its pongs back up soon
        sock.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        try:
            writer.write(b'{"type": "audio-start", "data": {"rate": 16000}}\n')
            session_id = json.loads(await reader.readline())["data"]["session_id"]
            writer.transport.pause_reading()
            await _write_until_the_server_stops_reading(writer)
            # nothing more comes: after 1 s without a message the connection must end, and with
            # it the hold on its session, as for any idle client
            await eventually(
                lambda: _no_connections(app),
                what="the idle timeout ending a connection whose client stopped reading",
                timeout=10,
            )
        finally:
            writer.transport.abort()
        resumer, resuming = await asyncio.open_connection("127.0.0.1", port)
        try:
            resuming.write(b'{"type": "audio-start", "data": {"session_id": "%s"}}\n' % session_id.encode())
            answer = json.loads(await resumer.readline())
        finally:
            resuming.close()
    assert answer["type"] == "session-started", answer


async def test_a_ws_client_that_stops_reading_is_closed_at_the_idle_timeout(tmp_path: Path) -> None:
    """The stalled client's connection ends at the idle timeout and gives its session's slot
    back: with room for one session, the next wearable gets one."""
    async with (
        embedded_app(tmp_path, connection_timeout_seconds=1.0, max_concurrent_sessions=1) as (base, app),
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(f"{base}/ws", autoping=False)
        try:
            await ws.send_str(start(format="opus"))
            # never reading: aiohttp's client stops reading its socket once its queue is full
            ping = _PING.decode()
            for _ in range(_FILL_LIMIT // len(ping)):
                try:
                    async with asyncio.timeout(2):
                        await ws.send_str(ping)
                except (TimeoutError, ConnectionError):
                    break  # the server stopped reading (or, its idle timeout come, closed)
            else:
                raise AssertionError("the server read every ping without its pongs being read")
            await eventually(
                lambda: _no_connections(app),
                what="the idle timeout ending a /ws connection whose client stopped reading",
                timeout=10,
            )

            async def slot_freed() -> bool:  # the connection's release follows its end
                return await app[STORE].zrange(Key.SESSION_SLOTS) == []

            await eventually(slot_freed, what="the stalled connection's session slot freed", timeout=10)
            async with http.ws_connect(f"{base}/ws") as next_client:
                await next_client.send_str(start(format="opus"))
                answer = await next_client.receive_json(timeout=10)
            assert answer["type"] == "session-started", answer
        finally:
            transport = ws._response.connection.transport if ws._response.connection else None
            if transport is not None:
                transport.abort()
            with contextlib.suppress(Exception):
                await ws.close()


async def _no_connections(app: web.Application) -> bool:
    return not app[INGEST].connections


async def test_a_session_opened_on_an_open_connection_stops_at_its_maximum_duration(tmp_path: Path) -> None:
    # the session opens at audio-start, after its connection did; a 2 s session must be stopped
    # then, not when the 60 s idle timeout is next looked at
    async with (
        embedded_app(tmp_path, max_session_duration_hours=2 / 3600, connection_timeout_seconds=60.0) as (
            base,
            _,
        ),
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/ws") as ws,
    ):
        await ws.send_str(start(format="opus"))
        assert (await event(ws))["type"] == "session-started"
        try:
            stopped = await event(ws, timeout=10)
        except TimeoutError:
            raise AssertionError("no session-stopped 10 s into a session of at most 2 s") from None
    assert stopped["type"] == "session-stopped"
    assert stopped["data"]["reason"] == "max_duration"
