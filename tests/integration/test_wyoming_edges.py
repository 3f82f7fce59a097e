"""Wearables at the edges (embedded server, in-process backends): audio that arrives while a
close from outside is answered, a TCP header line at the size limit, a TCP client that stops
reading during a shutdown, an oversized text while a refused payload is awaited. Where a race
needs one interleaving, the test holds the close-request answer at a known point with an event
instead of hoping for the timing."""

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.helpers import eventually, free_port
from tests.servers import embedded_app
from tests.wearable import event, omi_packets, send_chunks, start
from voxbus.ingest import wyoming_tcp
from voxbus.ingest.claim import SessionClaim
from voxbus.ingest.context import INGEST


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[str, web.Application, int]]:
    port = free_port()
    async with embedded_app(
        tmp_path, wyoming_port=port, max_message_size_bytes=4096, close_timeout_seconds=5
    ) as (base, app):
        yield base, app, port


class HeldCloseAnswer:
    """Holds the socket's answer to a close request from outside (its task is `control-…`) just
    before it finishes the session, until `release()`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered, self._go = asyncio.Event(), asyncio.Event()
        real = SessionClaim.finish

        async def finish(claim: SessionClaim, reason: str, *, wait: bool) -> dict[str, Any] | None:
            task = asyncio.current_task()
            if task is not None and task.get_name().startswith("control-"):
                self.entered.set()
                await self._go.wait()
            return await real(claim, reason, wait=wait)

        monkeypatch.setattr(SessionClaim, "finish", finish)

    def release(self) -> None:
        self._go.set()


async def events_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    out = []
    while (message := await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
        out.append(json.loads(message.data))
    return out


@pytest.mark.parametrize("next_audio", ["audio-start", "bare-packet"])
async def test_audio_while_a_close_request_is_answered_opens_no_session_over_the_closing_one(
    server: tuple[str, web.Application, int], monkeypatch: pytest.MonkeyPatch, next_audio: str
) -> None:
    """POST …/close while the wearable streams on: the adapter's `on_close_request` forgets the
    session's format before it finishes, so the reader, meanwhile, takes the next audio-start (or
    bare packet) as opening a new session, on the claim that still holds the closing one. That
    overwrites the claim: the close finishes the new session, the closed one is never stopped
    (its slots and reap deadline renewed for as long as the pod lives), and POST …/close times out."""
    base, _, _ = server
    held = HeldCloseAnswer(monkeypatch)
    packets = omi_packets(0.5)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/ws") as ws:
        await ws.send_str(start(format="opus"))
        first = (await event(ws))["data"]["session_id"]
        await send_chunks(ws, packets[:10])
        close = asyncio.create_task(http.post(f"{base}/api/audio/sessions/{first}/close"))
        await asyncio.wait_for(held.entered.wait(), 10)
        if next_audio == "audio-start":
            await ws.send_str(start(format="opus"))
        else:
            await ws.send_bytes(packets[10])
        await ws.send_str('{"type": "ping"}')
        before_pong = []
        while (answer := await event(ws))["type"] != "pong":
            before_pong.append(answer)
        held.release()
        after = await events_until_closed(ws)
        response = await asyncio.wait_for(close, 30)
        closed = await response.json()
        async with http.get(f"{base}/api/audio/sessions?status=active") as listing:
            active = [s["session_id"] for s in (await listing.json())["sessions"]]
    assert [e["type"] for e in before_pong if e["type"] == "session-started"] == [], before_pong
    assert response.status == 200, closed
    assert closed["final_info"]["status"] == "completed"
    stopped = [e["data"] for e in after if e["type"] == "session-stopped"]
    assert [s["session_id"] for s in stopped] == [first]
    assert active == []


async def test_a_tcp_header_line_one_byte_over_the_limit_does_not_make_its_payload_audio(
    server: tuple[str, web.Application, int],
) -> None:
    """The TCP wire takes a header line up to MAX_MESSAGE_SIZE_BYTES plus its newline (asyncio's
    `readuntil` limit counts the bytes before the separator), but the driver refuses a text
    message over MAX_MESSAGE_SIZE_BYTES counting the newline. So a line of exactly the limit and a
    newline is refused as too large by the adapter while the wire still hands over its payload,
    which then read as a bare packet: a ping's payload was recorded in the session. A line over
    the limit counting its newline is now a framing error, as the docs say."""
    _, _, port = server
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b'{"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": 1}}\n')
        started = json.loads(await reader.readline())
        assert started["type"] == "session-started"
        payload = b"\x01\x00" * 320
        header = {"type": "ping", "payload_length": len(payload), "data": {"pad": ""}}
        pad = 4096 - len(json.dumps(header).encode())
        header["data"] = {"pad": "x" * pad}
        line = json.dumps(header).encode() + b"\n"
        assert len(line) == 4096 + 1
        writer.write(line + payload)
        answer = json.loads(await reader.readline())  # refused as too long: the framing is lost
        assert await reader.read() == b""  # so the connection is closed
    finally:
        writer.close()
    assert answer["data"]["code"] == "header-too-long"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:  # the session took nothing of it: a resume says 0 chunks
        resume = {"rate": 16000, "width": 2, "channels": 1, "session_id": started["data"]["session_id"]}
        writer.write(json.dumps({"type": "audio-start", "data": resume}).encode() + b"\n")
        resumed = json.loads(await reader.readline())
    finally:
        writer.close()
    assert resumed["data"]["chunk_count"] == 0, resumed


async def test_a_tcp_client_that_stops_reading_does_not_hold_shutdown_past_its_budget(tmp_path: Path) -> None:
    """A Wyoming TCP client that keeps sending but never reads (a stalled phone app) fills the
    server's send buffer. The reader then waits in `drain()` for ever; at shutdown
    `SocketConnection.restart` waits its bounded time, then `close(1012)` sends the closing error
    event, whose `drain()` waits for ever too: SIGTERM never completes, and every other session's
    cleanup (leases, producer flush) waits with it. (A stalled `/ws` client does the same to
    aiohttp's close: the fix, a bound on the close and `transport.abort()` past it, serves both.)"""
    port = free_port()
    budget = 2.0
    async with embedded_app(
        tmp_path, wyoming_port=port, max_message_size_bytes=65536, shutdown_timeout_seconds=budget
    ) as (_, app):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b'{"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": 1}}\n')
            assert json.loads(await reader.readline())["type"] == "session-started"
            ping = json.dumps({"type": "ping", "data": {"text": "x" * 60000}}).encode() + b"\n"
            for _ in range(600):  # 36 MB of pongs: far more than the socket buffers hold
                writer.write(ping)
            [conn] = app[INGEST].connections
            transport = conn.adapter.opening.transport
            assert isinstance(transport, asyncio.WriteTransport)

            async def stalled() -> bool:  # the kernel's buffers are full: nothing announces it
                return transport.get_write_buffer_size() > 64 * 1024

            await eventually(stalled, what="the server's writes to the client back up", timeout=30)
            shutdown = asyncio.create_task(app.shutdown())
            done, _ = await asyncio.wait({shutdown}, timeout=2 * budget)
        finally:
            writer.transport.abort()
        await asyncio.wait_for(shutdown, 30)
    assert done, f"on_shutdown still waits for the stalled client after {2 * budget:g} s"


async def test_a_text_message_over_the_limit_after_a_refused_payload_header_is_answered(
    server: tuple[str, web.Application, int],
) -> None:
    """`WyomingAdapter.on_too_large` drops any message over the limit while a refused header's
    payload is awaited, taking it for that payload; a text message is never a payload, yet it is
    dropped unanswered and uncounted (the issue: bad input is logged, counted and answered)."""
    base, _, _ = server
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/ws") as ws:
        await ws.send_str('{"type": "audio-chunk", "payload_length": 6000}')
        assert (await event(ws))["data"]["code"] == "payload-too-large"
        await ws.send_str(json.dumps({"type": "ping", "data": {"text": "x" * 5000}}))  # over 4096
        await ws.send_str('{"type": "ping", "data": {"text": "after"}}')
        answers = [await event(ws)]
        while answers[-1]["type"] != "pong":
            answers.append(await event(ws))
    assert [a["data"].get("code") for a in answers[:-1]] == ["message-too-large"], answers


async def test_with_a_key_set_a_tcp_client_without_it_holds_nothing_for_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before its key, a TCP connection may hold a header of at most 64 KiB (never a payload), and
    only for AUTH_SECONDS: 500 silent connections once held 500 MiB for the idle timeout."""
    monkeypatch.setattr(wyoming_tcp, "AUTH_SECONDS", 0.3)
    port = free_port()
    async with embedded_app(tmp_path, wyoming_port=port, api_key=("k1",)) as (_, app):
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", port)
        big_reader, big = await asyncio.open_connection("127.0.0.1", port)
        try:
            big.write(b'{"type": "audio-start", "data": {"pad": "' + b"x" * 70_000)  # no newline yet
            too_long = json.loads(await big_reader.readline())
            assert await big_reader.read() == b""  # closed
            assert await silent_reader.read() == b""  # dropped after AUTH_SECONDS: nothing sent
            await eventually(lambda: _no_connections(app), what="both connections gone", timeout=5)
        finally:
            silent.close()
            big.close()
    assert too_long["data"]["code"] == "header-too-long"


async def _no_connections(app: web.Application) -> bool:
    return not app[INGEST].connections
