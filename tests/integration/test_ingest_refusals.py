"""Every bad input docs/api.md lists gets its exact message and close code, and nothing else breaks:
a healthy session streams alongside the whole time and its recording comes out exact."""

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.audio import chunked, tone_and_noise
from tests.clients import CLOSE
from tests.servers import embedded

RATES = [8000, 16000, 22050, 44100, 48000, 96000]
FORMATS = ["wav", "mp3", "flac", "aac", "pcm", "opus", "ogg", "webm"]


async def refused(url: str, **kwargs: Any) -> tuple[Any, int | None, str]:
    """Connect and read what the server says before it closes: (JSON body or None, code, reason)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url, **kwargs) as ws:
        message = await ws.receive(timeout=10)
        body = None
        if message.type == aiohttp.WSMsgType.TEXT:
            body = json.loads(message.data)
            message = await ws.receive(timeout=10)
        assert message.type == aiohttp.WSMsgType.CLOSE, message
        return body, ws.close_code, message.extra or ""


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[str]:
    async with embedded(tmp_path, max_message_size_bytes=65536, max_connections_per_session=1) as base:
        yield base


@pytest.fixture
async def healthy(server: str) -> AsyncIterator[None]:
    """A session that streams throughout the test; at the end its recording must be exact."""
    source = tone_and_noise(4.0, 16000)
    chunks = chunked(source.tobytes(), 3200)
    done, streaming = asyncio.Event(), asyncio.Event()

    async def stream() -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{server}/api/ws/audio?sample_rate=16000&format=pcm") as ws,
        ):
            hello = await ws.receive_json()
            for chunk in chunks:
                await ws.send_bytes(chunk)
                assert (await ws.receive_json())["message"] == "Chunk processed successfully"
                streaming.set()
                await asyncio.sleep(0.02)  # a client streaming in real time, alongside every test
            await done.wait()
            await ws.send_str(CLOSE)
            closed = await ws.receive_json(timeout=30)
            async with http.get(f"{server}/api/audio/sessions/{hello['session_id']}/audio") as response:
                body = await response.read()
        return {"closed": closed, "wav": body}

    task = asyncio.create_task(stream(), name="healthy-session")
    async with asyncio.timeout(10):
        await streaming.wait()
    yield
    done.set()
    result = await task
    assert result["closed"]["status"] == "completed"
    assert np.array_equal(np.frombuffer(result["wav"][44:], dtype=np.int16), source[:, 0])


@pytest.mark.parametrize(
    ("query", "body"),
    [
        ("sample_rate=12345", {"error": "Invalid sample rate", "valid_values": RATES}),
        ("sample_rate=abc", {"error": "Invalid sample rate", "valid_values": RATES}),
        ("channels=3", {"error": "Invalid channels", "valid_values": [1, 2]}),
        ("format=speex", {"error": "Invalid format", "valid_values": FORMATS}),
        ("echo=maybe", {"error": "Invalid echo", "valid_values": ["true", "false"]}),
        ("delay_ms=-5", {"error": "Invalid delay_ms", "valid_range": [0, 60000]}),
    ],
)
async def test_invalid_parameters_close_1008(
    server: str, healthy: None, query: str, body: dict[str, Any]
) -> None:
    assert await refused(f"{server}/api/ws/audio?{query}") == (body, 1008, body["error"])


async def test_malformed_json_unknown_messages_and_empty_chunks_keep_the_socket(
    server: str, healthy: None
) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server}/api/ws/audio?format=pcm") as ws:
        session_id = (await ws.receive_json())["session_id"]
        await ws.send_str("{not json")
        assert await ws.receive_json() == {"error": "Invalid JSON format"}
        await ws.send_str('{"type": "control", "action": "explode"}')
        assert await ws.receive_json() == {
            "error": "Unknown message type",
            "received": {"type": "control", "action": "explode"},
        }
        await ws.send_str("[1, 2]")
        assert await ws.receive_json() == {"error": "Unknown message type", "received": [1, 2]}
        # an object that does not say it is a close request is not one (and does not end the session)
        for lacking in ({}, {"note": "hi"}, {"type": "control"}, {"action": "close_session"}):
            await ws.send_json(lacking)
            assert await ws.receive_json() == {"error": "Unknown message type", "received": lacking}
        await ws.send_bytes(b"")
        assert await ws.receive_json() == {
            "message": "Failed to process chunk",
            "session_id": session_id,
            "chunk_count": 0,
            "status": "error",
        }
        await ws.send_bytes(b"\x00\x01" * 100)
        assert (await ws.receive_json())["chunk_count"] == 1  # still streaming


async def test_oversized_message_closes_1009(server: str, healthy: None) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server}/api/ws/audio?format=pcm") as ws:
        await ws.receive_json()
        await ws.send_bytes(bytes(65537))
        assert await ws.receive_json() == {"error": "Message too large", "size": 65537, "max_size": 65536}
        message = await ws.receive()
        assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1009)


async def test_unknown_malformed_and_closed_session_ids_close_1008(server: str, healthy: None) -> None:
    unknown = str(uuid.uuid4())
    body, code, _ = await refused(f"{server}/api/ws/audio/{unknown}")
    assert (body, code) == ({"error": "Session not found", "session_id": unknown}, 1008)
    body, code, _ = await refused(f"{server}/api/ws/audio/not-a-uuid")
    assert (body, code) == ({"error": "Session not found", "session_id": "not-a-uuid"}, 1008)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server}/api/ws/audio?format=pcm") as ws:
        session_id = (await ws.receive_json())["session_id"]
        await ws.send_str(CLOSE)
        assert (await ws.receive_json(timeout=30))["status"] == "completed"
    body, code, _ = await refused(f"{server}/api/ws/audio/{session_id}")
    assert (body, code) == ({"error": "Session not found", "session_id": session_id}, 1008)


async def test_too_many_connections_for_one_session_close_1008(server: str, healthy: None) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server}/api/ws/audio?format=pcm") as ws:
        session_id = (await ws.receive_json())["session_id"]
        body, code, _ = await refused(f"{server}/api/ws/audio/{session_id}")
        assert (body, code) == (
            {"error": "Too many connections for session", "session_id": session_id, "max": 1},
            1008,
        )
        await ws.send_bytes(b"\x00\x00" * 10)
        assert (await ws.receive_json())["message"] == "Chunk processed successfully"


async def test_a_resume_racing_its_old_socket_waits_for_it_to_close(server: str, healthy: None) -> None:
    """A client that reconnects at once may arrive before its old socket is released: it waits."""
    async with aiohttp.ClientSession() as http:
        old = await http.ws_connect(f"{server}/api/ws/audio?format=pcm")
        session_id = (await old.receive_json())["session_id"]
        await old.send_bytes(b"\x00\x00" * 10)
        assert (await old.receive_json())["chunk_count"] == 1
        resume = asyncio.create_task(http.ws_connect(f"{server}/api/ws/audio/{session_id}"))
        # the resume is waiting for the slot: nothing a client sees says when it started to
        await asyncio.sleep(0.5)
        await old.close()
        async with await resume as ws:
            assert await ws.receive_json(timeout=10) == {
                "message": "Audio session resumed",
                "session_id": session_id,
                "chunk_count": 1,
                "status": "active",
            }


async def test_cluster_full_closes_1013(tmp_path: Path) -> None:
    async with embedded(tmp_path, max_concurrent_sessions=1) as base:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/api/ws/audio?format=pcm") as ws:
            await ws.receive_json()
            assert await refused(f"{base}/api/ws/audio?format=pcm") == (
                {"error": "Too many concurrent sessions", "max": 1},
                1013,
                "Too many concurrent sessions",
            )
            await ws.send_str(CLOSE)
            await ws.receive_json(timeout=30)
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{base}/api/ws/audio?format=pcm") as ws:
            assert (await ws.receive_json())["message"] == "Audio session created"  # the slot was freed


async def test_a_session_refused_1013_leaves_no_record(tmp_path: Path) -> None:
    """A refused session was never opened: it is not listed (as `active`, never reaped) and its
    id was never told to anyone."""
    async with (
        embedded(tmp_path, max_concurrent_sessions=1) as base,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/api/ws/audio?format=pcm") as ws,
    ):
        opened = (await ws.receive_json())["session_id"]
        body, code, _ = await refused(f"{base}/api/ws/audio?format=pcm")
        assert (body, code) == ({"error": "Too many concurrent sessions", "max": 1}, 1013)
        async with http.get(f"{base}/api/audio/sessions") as response:
            listed = await response.json()
        assert [session["session_id"] for session in listed["sessions"]] == [opened]


async def test_api_keys_on_every_surface(tmp_path: Path) -> None:
    async with embedded(tmp_path, api_key=("k-one", "k-two")) as base:
        assert await refused(f"{base}/api/ws/audio?format=pcm") == (
            {"error": "Invalid API key"},
            1008,
            "Invalid API key",
        )
        assert await refused(f"{base}/api/ws/audio?format=pcm&api_key=wrong") == (
            {"error": "Invalid API key"},
            1008,
            "Invalid API key",
        )
        assert await refused(f"{base}/ws/echo?token=wrong") == (None, 4001, "Invalid API key")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with connect(f"{base.replace('http', 'ws')}/ws/echo") as ws:
                await ws.recv()
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "Invalid API key")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/audio/sessions") as response:
                assert (response.status, await response.json()) == (401, {"error": "Invalid API key"})
            for headers, query in [
                ({"Authorization": "Bearer k-two"}, ""),
                ({"X-API-Key": "k-one"}, ""),
                ({}, "?api_key=k-one"),
                ({}, "?token=k-two"),
            ]:
                async with http.get(f"{base}/api/audio/sessions{query}", headers=headers) as response:
                    assert response.status == 200
            async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&token=k-one") as ws:
                assert (await ws.receive_json())["message"] == "Audio session created"
            async with http.ws_connect(f"{base}/ws/echo", headers={"X-API-Key": "k-two"}) as ws:
                assert (await ws.receive_json())["type"] == "config"
