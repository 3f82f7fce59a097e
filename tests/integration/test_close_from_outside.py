"""Sessions closed from outside their socket, on the echo protocols: `POST …/close` (on the pod
holding the socket or another one) and the pipeline ending the session. The socket hears it and
closes, as docs/api.md says; the session protocol's side of this is in test_ingest_egress_and_api
and test_session_outcomes."""

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.servers import cluster, embedded, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

PCM = b"\x01\x00" * 1600  # 100 ms of 16 kHz mono s16le


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


async def only_session(http: aiohttp.ClientSession, base: str, user_id: str) -> str:
    """The id of `user_id`'s one session: echo clients are never told theirs."""
    async with http.get(f"{base}/api/audio/sessions?user_id={user_id}") as response:
        sessions = (await response.json())["sessions"]
    assert len(sessions) == 1, sessions
    session_id: str = sessions[0]["session_id"]
    return session_id


async def close_over_http(http: aiohttp.ClientSession, base: str, session_id: str) -> dict[str, Any]:
    async with http.post(f"{base}/api/audio/sessions/{session_id}/close") as response:
        assert response.status == 200
        answer: dict[str, Any] = await response.json()
    assert (answer["success"], answer["session_id"]) == (True, session_id)
    info: dict[str, Any] = answer["final_info"]
    return info


async def server_close(ws: aiohttp.ClientWebSocketResponse, *, timeout: float = 10) -> tuple[int, str]:
    """The close code and reason the server sends next; echoes due before it are skipped."""
    async with asyncio.timeout(timeout):
        while (message := await ws.receive()).type == aiohttp.WSMsgType.BINARY:
            pass
    assert message.type == aiohttp.WSMsgType.CLOSE, message
    return message.data, message.extra


async def test_close_over_http_closes_a_ws_audio_socket_1000(tmp_path: Path) -> None:
    # the seed clients' library; it reports the close code and reason the server sent
    user = uuid.uuid4().hex
    async with (
        embedded(tmp_path) as base,
        aiohttp.ClientSession() as http,
        connect(ws_url(base, f"/ws/audio?user_id={user}")) as ws,
    ):
        await ws.send(PCM)
        assert await asyncio.wait_for(ws.recv(), 10) == PCM  # read, recorded and echoed
        session_id = await only_session(http, base, user)
        info = await close_over_http(http, base, session_id)
        try:
            extra = await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as closed:
            assert closed.rcvd is not None
            assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "closed over HTTP")
        else:
            raise AssertionError(f"the socket stayed open; it sent {extra!r}")
    assert (info["protocol"], info["status"]) == ("echo", "completed")
    assert info["close_reason"] == "closed over HTTP"
    assert (info["total_chunks"], info["bytes_received"], info["duration_seconds"]) == (1, 3200, 0.1)


async def test_close_over_http_closes_a_ws_echo_socket_1000(tmp_path: Path) -> None:
    user = uuid.uuid4().hex
    async with (
        embedded(tmp_path) as base,
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(base, f"/ws/echo?user_id={user}")) as ws,
    ):
        assert (await ws.receive_json(timeout=10))["type"] == "config"
        await ws.send_bytes(PCM)
        await ws.send_str(json.dumps({"type": "ping"}))
        assert await ws.receive_json(timeout=10) == {"type": "pong"}  # the chunk before it was read
        session_id = await only_session(http, base, user)
        info = await close_over_http(http, base, session_id)
        assert await server_close(ws) == (1000, "closed over HTTP")
    assert (info["protocol"], info["status"], info["close_reason"]) == (
        "delayed_echo",
        "completed",
        "closed over HTTP",
    )
    assert (info["total_chunks"], info["bytes_received"], info["duration_seconds"]) == (1, 3200, 0.1)


async def test_an_echo_socket_whose_session_the_pipeline_ended_closes_1000_with_the_reason(
    tmp_path: Path,
) -> None:
    # 11 s of audio at once where a session may hold 10 s: the recording fails at once, long
    # before the socket's own 10 s limit (max_duration) comes
    user = uuid.uuid4().hex
    reason = "decoded audio reached the maximum session duration (0.00277778 h, MAX_SESSION_DURATION_HOURS)"
    async with (
        embedded(tmp_path, max_session_duration_hours=10 / 3600) as base,
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(base, f"/ws/audio?delay_ms=60000&user_id={user}")) as ws,
    ):
        for _ in range(11):
            await ws.send_bytes(bytes(32000))
        assert await server_close(ws, timeout=8) == (1000, reason)
        async with http.get(f"{base}/api/audio/sessions/{await only_session(http, base, user)}") as response:
            info = await response.json()
    assert (info["status"], info["close_reason"], info["error"]) == ("error", reason, reason)
    assert (info["total_chunks"], info["duration_seconds"]) == (11, 10.0)


async def test_distributed_close_over_http_on_another_pod_closes_the_echo_socket(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("close"))
    user = uuid.uuid4().hex
    async with (
        cluster(env, tmp_path, ingests=2, services=("transcoder", "writer", "echo")) as (holder, other, *_),
        aiohttp.ClientSession() as http,
        http.ws_connect(ws_url(holder.url, f"/ws/audio?user_id={user}")) as ws,
    ):
        await ws.send_bytes(PCM)
        assert await ws.receive_bytes(timeout=30) == PCM
        session_id = await only_session(http, other.url, user)
        info = await close_over_http(http, other.url, session_id)
        assert await server_close(ws) == (1000, "closed over HTTP")
    assert (info["status"], info["close_reason"]) == ("completed", "closed over HTTP")
    assert info["total_chunks"] == 1
