"""Egress back to the right socket, the echo protocols on the wire, and the session HTTP API."""

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
from websockets.asyncio.client import connect

from tests.clients import CLOSE
from tests.helpers import score
from tests.servers import embedded, embedded_app
from voxbus.common.constants import Key, SessionField, SessionStatus
from voxbus.common.records import AudioFormat, BusMessage, EchoSettings, new_session_id
from voxbus.ingest.context import INGEST
from voxbus.ingest.reaper import reap_round
from voxbus.ingest.sessions import SessionSpec


async def egress(app, session_id: str, audio: bytes, seq: int | None = None) -> None:  # type: ignore[no-untyped-def]
    """What echo and telephony do: look the route up, produce to that partition."""
    ctx = app[INGEST]
    route = await ctx.store.get(Key.ROUTE + session_id)
    assert route is not None, "a connected session has a route"
    pod, partition = route.split()
    assert pod == ctx.settings.pod_name
    headers = (("t", b"chunk"),) if seq is None else (("t", b"chunk"), ("seq", str(seq).encode()))
    message = BusMessage(key=session_id.encode(), value=audio, headers=headers)
    await ctx.bus.send_and_wait(ctx.settings.topic_prefix + "egress", message, partition=int(partition))


async def test_egress_reaches_the_session_socket_on_every_protocol(tmp_path: Path) -> None:
    async with embedded_app(tmp_path, echo_delay_ms=1000) as (base, app):
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&echo=true") as ws:
                session_id = (await ws.receive_json())["session_id"]
                await egress(app, session_id, b"\x01\x02" * 160)
                assert await ws.receive_bytes(timeout=5) == b"\x01\x02" * 160

            async with http.ws_connect(f"{base}/ws/echo") as ws:
                assert await ws.receive_json() == {
                    "type": "config",
                    "data": {"sample_rate": 16000, "chunk_size": 4096, "channels": 1, "sample_width": 2},
                }
                await ws.send_str(json.dumps({"type": "ping"}))
                assert await ws.receive_json() == {"type": "pong"}
                session_id = await _only_session(app, "delayed_echo")
                await egress(app, session_id, b"\x03\x04" * 2048)
                assert await ws.receive_bytes(timeout=5) == b"\x03\x04" * 2048

        async with connect(f"{base.replace('http', 'ws')}/ws/audio") as ws:
            assert ws.response is not None
            # offered by default, declined: audio hardly compresses, and inflating costs CPU
            assert "Sec-WebSocket-Extensions" not in ws.response.headers
            await ws.send("hello")
            assert await ws.recv() == "Error: Only binary audio data is supported."
            await ws.send(bytes(32000))  # the seed clients' 1 s of 16 kHz silence
            session_id = await _only_session(app, "echo")
            await egress(app, session_id, bytes(32000))
            assert await ws.recv() == bytes(32000)


async def test_an_echo_sent_twice_reaches_the_client_once(tmp_path: Path) -> None:
    """An echo producer that crashed sends a few echoes again (same chunk seq): ingest drops them."""
    async with (
        embedded_app(tmp_path) as (base, app),
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/api/ws/audio?format=pcm") as ws,
    ):
        session_id = (await ws.receive_json())["session_id"]
        for seq, audio in [
            (5, b"\x05\x00"),
            (6, b"\x06\x00"),
            (5, b"\x05\x00"),
            (6, b"\x06\x00"),
            (7, b"\x07\x00"),
        ]:
            await egress(app, session_id, audio, seq)
        await egress(app, session_id, b"prompt")  # no seq (telephony prompts): always delivered
        got = [await ws.receive_bytes(timeout=5) for _ in range(4)]
    assert got == [b"\x05\x00", b"\x06\x00", b"\x07\x00", b"prompt"]


async def _only_session(app, protocol: str) -> str:  # type: ignore[no-untyped-def]
    ctx = app[INGEST]
    for _ in range(50):
        for session_id, _ in await ctx.store.zrange(Key.SESSIONS_ALL, descending=True):
            if await ctx.store.hget(Key.SESSION + session_id, "protocol") == protocol:
                return session_id
        await asyncio.sleep(0.05)  # registered as the socket opens; no message tells the client its id
    raise AssertionError(f"no {protocol} session")


async def test_session_http_api(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        ids = []
        for user in ["ann", "bob", "ann", "ann"]:
            async with http.ws_connect(
                f"{base}/api/ws/audio?format=pcm&sample_rate=16000&user_id={user}"
            ) as ws:
                ids.append((await ws.receive_json())["session_id"])
                await ws.send_bytes(b"\x00\x01" * 800)
                await ws.receive_json()
                if user == "bob":
                    await ws.send_str(CLOSE)
                    await ws.receive_json(timeout=30)

        async def get(path: str) -> tuple[int, object]:
            async with http.get(f"{base}{path}") as response:
                return response.status, await response.json()

        status, page = await get("/api/audio/sessions?user_id=ann&limit=2")
        assert status == 200
        assert [s["session_id"] for s in page["sessions"]] == [ids[3], ids[2]]  # newest first
        status, rest = await get(f"/api/audio/sessions?user_id=ann&limit=2&cursor={page['next_cursor']}")
        assert [s["session_id"] for s in rest["sessions"]] == [ids[0]]
        assert rest["next_cursor"] is None
        status, done = await get("/api/audio/sessions?status=completed")
        assert [s["session_id"] for s in done["sessions"]] == [ids[1]]
        assert (await get("/api/audio/sessions?limit=0"))[0] == 422
        assert (await get("/api/audio/sessions?status=sleeping"))[0] == 422

        status, info = await get(f"/api/audio/sessions/{ids[0]}")
        assert status == 200
        assert info["user_id"] == "ann"
        assert info["status"] == "active"  # dropped without close: resumable
        assert info["total_chunks"] == 1
        assert info["bytes_received"] == 1600
        missing = str(uuid.uuid4())
        assert await get(f"/api/audio/sessions/{missing}") == (
            404,
            {"error": "Session not found", "session_id": missing},
        )
        assert await get("/api/audio/sessions/nope") == (
            422,
            {"error": "Invalid session id", "session_id": "nope"},
        )

        # close over HTTP: a session with no socket anywhere, then one whose socket is open
        async with http.post(f"{base}/api/audio/sessions/{ids[0]}/close") as response:
            closed = await response.json()
        assert closed["success"] is True
        assert closed["final_info"]["status"] == "completed"
        assert closed["final_info"]["duration_seconds"] == 0.05
        async with http.ws_connect(f"{base}/api/ws/audio?format=pcm") as ws:
            session_id = (await ws.receive_json())["session_id"]
            async with http.post(f"{base}/api/audio/sessions/{session_id}/close") as response:
                assert (await response.json())["final_info"]["status"] == "completed"
            told = await ws.receive_json(timeout=10)
            assert told["message"] == "Session closed successfully"
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1000


async def test_idle_socket_is_closed_1000_and_its_recording_finished(tmp_path: Path) -> None:
    async with (
        embedded(tmp_path, connection_timeout_seconds=1.0) as base,
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
            session_id = (await ws.receive_json())["session_id"]
            await ws.send_bytes(b"\x00\x01" * 1600)
            await ws.receive_json()
            message = await ws.receive(timeout=5)
            assert (message.type, ws.close_code, message.extra) == (aiohttp.WSMsgType.CLOSE, 1000, "idle")
        async with http.post(f"{base}/api/audio/sessions/{session_id}/close") as response:
            info = (await response.json())["final_info"]
        assert (info["status"], info["close_reason"], info["duration_seconds"]) == ("completed", "idle", 0.1)


async def test_dropped_session_is_reaped_after_the_idle_timeout(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, connection_timeout_seconds=1.0) as (base, app),
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(f"{base}/api/ws/audio?format=pcm") as ws:
            session_id = (await ws.receive_json())["session_id"]
        ctx = app[INGEST]

        async def finished() -> bool:
            return await ctx.store.hget(Key.SESSION + session_id, "finalized") == "1"

        assert await ctx.store.wait_until(Key.SESSION_CHANNEL + session_id, finished, timeout=10)
        assert await ctx.store.hget(Key.SESSION + session_id, "close_reason") == "idle"
        assert await score(ctx.store, Key.SESSION_SLOTS, session_id) is None  # its slot is free


async def test_a_list_filter_that_matches_few_reads_a_bounded_page_and_goes_on_by_cursor(
    tmp_path: Path,
) -> None:
    # 1,500 sessions, the oldest of them failed: one request reads at most 1,000 sessions (every
    # socket of the pod waits while it does), so it answers with what it found and a cursor
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        registry = app[INGEST].registry
        spec = SessionSpec(
            user_id="u",
            protocol="session",
            format=AudioFormat(codec="pcm_s16le", rate=16000, channels=1),
            echo=EchoSettings(),
        )
        failed = new_session_id()
        await registry.create(failed, spec)
        await app[INGEST].store.hset(Key.SESSION + failed, {SessionField.STATUS: SessionStatus.ERROR})
        for _ in range(1499):
            await registry.create(new_session_id(), spec)
        pages, cursor = [], ""
        while True:
            async with http.get(f"{base}/api/audio/sessions?status=error&limit=10{cursor}") as response:
                page = await response.json()
            pages.append([s["session_id"] for s in page["sessions"]])
            if page["next_cursor"] is None:
                break
            cursor = f"&cursor={page['next_cursor']}"
    assert pages[0] == []  # the first 1,000 sessions looked at hold no failed one
    assert [failed] in pages[1:] and sum(len(p) for p in pages) == 1
    assert len(pages) <= 3


async def test_one_reaper_round_stops_every_idle_session_due_not_just_a_page(tmp_path: Path) -> None:
    # 15,000 connect-and-drop clients left 11,759 sessions active 8 minutes past their idle
    # timeout when a round stopped 100: a round goes on while pages come back full
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        ctx = app[INGEST]
        spec = SessionSpec(
            user_id="u",
            protocol="session",
            format=AudioFormat(codec="pcm_s16le", rate=16000, channels=1),
            echo=EchoSettings(),
        )
        ids = [new_session_id() for _ in range(350)]
        for session_id in ids:
            await ctx.registry.create(session_id, spec)
        await ctx.store.zadd(Key.REAP_AT, dict.fromkeys(ids, 0.0))  # all past their idle timeout
        assert await reap_round(ctx) == 350
        async with http.get(f"{base}/api/audio/sessions?status=active&limit=100") as response:
            assert (await response.json())["sessions"] == []
