"""Input API.md does not foresee: text that is not quite JSON, chunks over MAX_CHUNK_SIZE_MB,
odd Range headers, cursors and session id spellings. Each gets a clear answer, and what the
server sends is strict JSON."""

import json
from pathlib import Path
from typing import Any

import aiohttp

from tests.clients import CLOSE
from tests.servers import embedded

NOT_QUITE_JSON = ['{"type": NaN}', "[Infinity]", '{"a": -Infinity}', "NaN", "[" * 100_000, '{"a":' * 50_000]
INVALID = {"error": "Invalid JSON format"}


def _strict(text: str) -> Any:
    """What a strict JSON parser makes of a server message (NaN and Infinity are not JSON)."""

    def refuse(name: str) -> Any:
        raise AssertionError(f"the server sent {name}, which is not JSON: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


async def test_session_protocol_answers_json_it_cannot_take_as_invalid_and_goes_on(tmp_path: Path) -> None:
    async with (
        embedded(tmp_path) as base,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/api/ws/audio?format=pcm&sample_rate=16000") as ws,
    ):
        await ws.receive_json()
        for text in NOT_QUITE_JSON:
            await ws.send_str(text)
            assert _strict(await ws.receive_str(timeout=10)) == INVALID, text[:20]
        await ws.send_bytes(b"\x00\x01" * 160)
        assert _strict(await ws.receive_str(timeout=10))["chunk_count"] == 1
        await ws.send_str(CLOSE)
        closed = _strict(await ws.receive_str(timeout=30))
        assert (closed["status"], closed["duration_seconds"]) == ("completed", 0.01)


async def test_delayed_echo_answers_json_it_cannot_take_as_invalid_and_goes_on(tmp_path: Path) -> None:
    async with (
        embedded(tmp_path) as base,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/ws/echo") as ws,
    ):
        assert (await ws.receive_json())["type"] == "config"
        for text in NOT_QUITE_JSON:
            await ws.send_str(text)
            reply = _strict(await ws.receive_str(timeout=10))
            assert reply == {"type": "error", "message": "Invalid JSON format"}, text[:20]
        await ws.send_str('{"type": "ping"}')
        assert _strict(await ws.receive_str(timeout=10)) == {"type": "pong"}


async def test_a_chunk_over_max_chunk_size_closes_1009_and_the_session_resumes(tmp_path: Path) -> None:
    limit = 16384  # MAX_CHUNK_SIZE_MB=1/64, below MAX_MESSAGE_SIZE_BYTES
    async with embedded(tmp_path, max_chunk_size_mb=1 / 64) as base, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
            session_id = (await ws.receive_json())["session_id"]
            await ws.send_bytes(bytes(limit))
            assert (await ws.receive_json())["chunk_count"] == 1
            await ws.send_str(json.dumps({"type": "note", "text": "x" * limit}))  # text: message limit
            assert (await ws.receive_json())["error"] == "Unknown message type"
            await ws.send_bytes(bytes(limit + 2))
            assert await ws.receive_json() == {
                "error": "Chunk too large",
                "size": limit + 2,
                "max_size": limit,
            }
            message = await ws.receive()
            assert (message.type, ws.close_code, message.extra) == (
                aiohttp.WSMsgType.CLOSE,
                1009,
                "Chunk too large",
            )
        async with http.ws_connect(f"{base}/api/ws/audio/{session_id}") as ws:
            assert (await ws.receive_json())["chunk_count"] == 1
            await ws.send_bytes(bytes(limit))
            assert (await ws.receive_json())["chunk_count"] == 2
            await ws.send_str(CLOSE)
            closed = await ws.receive_json(timeout=30)
        assert (closed["status"], closed["duration_seconds"]) == ("completed", 2 * limit / 2 / 16000)
