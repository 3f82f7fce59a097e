"""Input docs/api.md does not foresee: text that is not quite JSON, chunks over MAX_CHUNK_SIZE_MB,
odd Range headers, cursors and session id spellings. Each gets a clear answer, and what the
server sends is strict JSON."""

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from tests.clients import CLOSE
from tests.servers import embedded, embedded_app
from voxbus.common.bus.base import BusError
from voxbus.common.records import BusMessage
from voxbus.common.runtime import BUS

NOT_QUITE_JSON = [
    '{"type": NaN}',
    "[Infinity]",
    '{"a": -Infinity}',
    "NaN",
    '{"a": 1e999}',  # a JSON number no double holds: it would be Infinity
    '{"type": "ping", "x": -1e400}',
    "[" * 100_000,
    '{"a":' * 50_000,
]
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


async def test_session_ids_in_any_letter_case_name_the_same_session(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
            session_id = (await ws.receive_json())["session_id"]
            await ws.send_bytes(b"\x00\x01" * 160)
            await ws.receive_json()
        shouted = session_id.upper()
        async with http.ws_connect(f"{base}/api/ws/audio/{shouted}") as ws:
            assert await ws.receive_json() == {
                "message": "Audio session resumed",
                "session_id": session_id,
                "chunk_count": 1,
                "status": "active",
            }
        async with http.get(f"{base}/api/audio/sessions/{shouted}") as response:
            assert (response.status, (await response.json())["session_id"]) == (200, session_id)
        async with http.post(f"{base}/api/audio/sessions/{shouted}/close") as response:
            assert (response.status, (await response.json())["final_info"]["status"]) == (200, "completed")
        async with http.get(f"{base}/api/audio/sessions/{shouted}/audio") as response:
            assert (response.status, len(await response.read())) == (200, 44 + 320)
        async with http.get(f"{base}/api/audio/sessions/{session_id[:-1]}X") as response:
            assert (response.status, await response.json()) == (
                422,
                {"error": "Invalid session id", "session_id": f"{session_id[:-1]}X"},
            )


async def _one_closed_session(http: aiohttp.ClientSession, base: str) -> str:
    """A completed session of one 10 ms chunk (a 364-byte WAV)."""
    async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
        session_id: str = (await ws.receive_json())["session_id"]
        await ws.send_bytes(b"\x00\x01" * 160)
        await ws.receive_json()
        await ws.send_str(CLOSE)
        await ws.receive_json(timeout=30)
    return session_id


async def test_an_empty_suffix_range_is_416(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        audio = f"{base}/api/audio/sessions/{await _one_closed_session(http, base)}/audio"
        for empty in ["bytes=-0", "bytes=-000"]:
            async with http.get(audio, headers={"Range": empty}) as response:
                assert (response.status, response.headers.get("Content-Range")) == (416, "bytes */364"), empty
        async with http.get(audio, headers={"Range": "bytes=-4"}) as response:
            assert (response.status, await response.read()) == (206, b"\x00\x01" * 2)


async def test_a_list_cursor_must_be_a_finite_number(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        session_id = await _one_closed_session(http, base)
        for cursor in ["nan", "NaN", "inf", "-inf", "Infinity", "1e400"]:
            async with http.get(f"{base}/api/audio/sessions?cursor={cursor}") as response:
                assert (response.status, await response.json()) == (
                    422,
                    {"error": "Invalid limit or cursor"},
                ), cursor
        async with http.get(f"{base}/api/audio/sessions?cursor=1e12") as response:
            assert [s["session_id"] for s in (await response.json())["sessions"]] == [session_id]


async def test_after_a_chunk_the_bus_refused_the_client_resumes_and_resends_from_chunk_count(
    tmp_path: Path,
) -> None:
    # the bus refuses one chunk (a broker limit, an outage): the client is told, the socket
    # closes 1011 after answering what it read, and the resume greeting's chunk_count says where
    # to go on. Every number the client sees is what the recording holds
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        bus, sends = app[BUS], [0]
        send = bus.send

        async def refuse_the_second_chunk(topic: str, message: BusMessage, **kwargs: Any) -> Any:
            if dict(message.headers).get("t") == b"chunk" and topic.endswith("audio.raw"):
                sends[0] += 1
                if sends[0] == 2:
                    raise BusError("refused by the broker")
            return await send(topic, message, **kwargs)

        bus.send = refuse_the_second_chunk  # type: ignore[method-assign]
        chunks = [bytes([value, 0]) * 1600 for value in (1, 2, 3)]
        ws_base = base.replace("http", "ws")
        async with http.ws_connect(f"{ws_base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
            session_id = (await ws.receive_json())["session_id"]
            replies = []
            for chunk in chunks[:2]:
                await ws.send_bytes(chunk)
                replies.append(_strict(await ws.receive_str(timeout=10)))
            closing = await ws.receive(timeout=10)
        async with http.ws_connect(f"{ws_base}/api/ws/audio/{session_id}") as ws:
            greeting = _strict(await ws.receive_str(timeout=10))
            for chunk in chunks[greeting["chunk_count"] :]:
                await ws.send_bytes(chunk)
                replies.append(_strict(await ws.receive_str(timeout=10)))
            await ws.send_str(CLOSE)
            closed = _strict(await ws.receive_str(timeout=30))
        async with http.get(f"{base}/api/audio/sessions/{session_id}") as response:
            info = await response.json()
        async with http.get(f"{base}/api/audio/sessions/{session_id}/audio") as response:
            recorded = np.frombuffer((await response.read())[44:], dtype=np.int16)
    assert [(r["message"], r["chunk_count"]) for r in replies] == [
        ("Chunk processed successfully", 1),
        ("Failed to process chunk", 1),
        ("Chunk processed successfully", 2),
        ("Chunk processed successfully", 3),
    ]
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1011)
    assert greeting["chunk_count"] == 1
    assert (closed["chunk_count"], info["total_chunks"]) == (3, 3)
    assert np.array_equal(recorded, np.frombuffer(b"".join(chunks), dtype=np.int16))


async def test_a_client_that_drops_without_a_close_frame_resumes_and_records_each_chunk_once(
    tmp_path: Path,
) -> None:
    # 200 chunks sent without waiting for acks, then the TCP connection ends (no close frame):
    # the acks the server was writing fail, the chunks are recorded all the same
    chunks = [np.full(320, number, "<i2").tobytes() for number in range(1, 201)]
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        ws_base = base.replace("http", "ws")
        async with http.ws_connect(f"{ws_base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
            session_id = (await ws.receive_json())["session_id"]
            for chunk in chunks:
                await ws.send_bytes(chunk)
            assert ws._response.connection is not None
            ws._response.connection.transport.close()  # type: ignore[union-attr]
        async with asyncio.timeout(30):
            while True:  # until the server let go of the dropped socket
                async with http.ws_connect(f"{ws_base}/api/ws/audio/{session_id}") as ws:
                    greeting = await ws.receive_json()
                    if "error" in greeting:
                        continue
                    for chunk in chunks[greeting["chunk_count"] :]:
                        await ws.send_bytes(chunk)
                        await ws.receive_json()
                    await ws.send_str(CLOSE)
                    closed = _strict(await ws.receive_str(timeout=30))
                    break
        async with http.get(f"{base}/api/audio/sessions/{session_id}/audio") as response:
            recorded = np.frombuffer((await response.read())[44:], dtype=np.int16)
    assert np.array_equal(recorded, np.frombuffer(b"".join(chunks), dtype=np.int16))
    assert closed["chunk_count"] == 200


async def test_a_client_that_leaves_right_after_close_session_costs_no_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        ws_base = base.replace("http", "ws")
        for _ in range(5):
            async with http.ws_connect(f"{ws_base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
                session_id = (await ws.receive_json())["session_id"]
                for _ in range(10):
                    await ws.send_bytes(b"\x01\x00" * 320)
                    await ws.receive_json()  # nothing unread: the close below is a FIN, not a reset
                await ws.send_str(CLOSE)
                assert ws._response.connection is not None
                ws._response.connection.transport.close()  # type: ignore[union-attr]
            async with asyncio.timeout(30):
                while True:  # the session still completes, without its client
                    async with http.get(f"{base}/api/audio/sessions/{session_id}") as response:
                        if (await response.json())["status"] == "completed":
                            break
                    await asyncio.sleep(0.05)  # a client gone has only the HTTP API to ask
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
