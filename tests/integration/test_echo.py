"""Echo through the bus, end to end with real clients: `/ws/audio` (seeds 1 and 2), `/ws/echo`
(seed 4) and `/api/ws/audio?echo=true`, embedded and as separate processes over Kafka and Redis,
including a client that resumes on another ingest pod and an echo process that is killed."""

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.audio import chunked, speech
from tests.servers import Process, cluster, embedded, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

SILENCE = bytes(32000)  # what the seed clients send: 1 s of 16 kHz s16le silence
CONFIG = {
    "type": "config",
    "data": {"sample_rate": 16000, "chunk_size": 4096, "channels": 1, "sample_width": 2},
}


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://") + path


def numbered(count: int, size: int) -> list[bytes]:
    """Chunks that differ from each other (speech, so not constant), to check identity and order."""
    audio = speech(count * size / 32000 + 0.1, 16000).tobytes()
    return chunked(audio, size)[:count]


async def seed_client(url: str) -> bytes:
    """The existing echo clients: `websockets`, send 1 s of 16 kHz silence, receive the same bytes."""
    async with connect(url) as ws:
        await ws.send(SILENCE)
        received = b""
        while len(received) < len(SILENCE):
            message = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(message, bytes)
            received += message
        return received


async def delayed_echo(url: str, chunks: list[bytes], *, interval: float) -> list[tuple[bytes, float]]:
    """Seed 4's client pattern: config first, chunks at real time; each echo with its lag in s."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        assert await ws.receive_json(timeout=10) == CONFIG
        sent: list[float] = []

        async def send() -> None:
            for chunk in chunks:
                sent.append(time.monotonic())
                await ws.send_bytes(chunk)
                await asyncio.sleep(interval)  # chunks at real time, as that client sends them

        sender = asyncio.create_task(send())
        echoes = []
        for index in range(len(chunks)):
            data = await ws.receive_bytes(timeout=10)
            echoes.append((data, time.monotonic() - sent[index]))
        await sender
        return echoes


async def test_ws_audio_echoes_the_seed_clients_second_of_silence(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base:
        assert await seed_client(ws_url(base, "/ws/audio")) == SILENCE


async def test_ws_echo_sends_every_chunk_back_after_one_second_in_order(tmp_path: Path) -> None:
    chunks = numbered(8, 8192)  # 4096 samples each, as the delayed-echo client sends
    async with embedded(tmp_path) as base:
        echoes = await delayed_echo(ws_url(base, "/ws/echo"), chunks, interval=0.256)
    assert [data for data, _ in echoes] == chunks
    for _, lag in echoes:
        assert 0.99 <= lag < 1.5, f"echo after {lag:.3f} s, expected 1.0 s"


async def test_ws_echo_ping_pong_and_bad_key(tmp_path: Path) -> None:
    async with embedded(tmp_path, api_key="secret") as base, aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(base, "/ws/echo?token=secret")) as ws:
            assert await ws.receive_json(timeout=10) == CONFIG
            await ws.send_str(json.dumps({"type": "ping"}))
            assert await ws.receive_json(timeout=10) == {"type": "pong"}
        async with http.ws_connect(ws_url(base, "/ws/echo?token=wrong")) as ws:
            message = await ws.receive(timeout=10)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert (ws.close_code, message.extra) == (4001, "Invalid API key")


async def test_session_protocol_with_echo_gets_acks_and_delayed_audio(tmp_path: Path) -> None:
    chunks = numbered(5, 3200)
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        url = ws_url(base, "/api/ws/audio?format=pcm&sample_rate=16000&echo=true&delay_ms=300")
        async with http.ws_connect(url) as ws:
            assert (await ws.receive_json(timeout=10))["message"] == "Audio session created"
            started = time.monotonic()
            for chunk in chunks:
                await ws.send_bytes(chunk)
            acks, echoes = [], []
            while len(acks) < len(chunks) or len(echoes) < len(chunks):
                message = await ws.receive(timeout=10)
                if message.type == aiohttp.WSMsgType.TEXT:
                    acks.append(json.loads(message.data)["chunk_count"])
                else:
                    echoes.append((message.data, time.monotonic() - started))
    assert acks == [1, 2, 3, 4, 5]
    assert [data for data, _ in echoes] == chunks
    assert min(lag for _, lag in echoes) >= 0.29


async def test_sessions_without_echo_get_no_audio_back(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        url = ws_url(base, "/api/ws/audio?format=pcm&sample_rate=16000")
        async with http.ws_connect(url) as ws:
            await ws.receive_json(timeout=10)
            await ws.send_bytes(SILENCE)
            assert (await ws.receive_json(timeout=10))["chunk_count"] == 1
            with pytest.raises(TimeoutError):
                await ws.receive(timeout=1.0)


async def test_distributed_echo_follows_a_resume_and_survives_an_echo_crash(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("echo"))
    chunks = numbered(12, 3200)  # 100 ms each
    async with cluster(env, tmp_path, ingests=2, services=("echo",)) as (first, second, echo):
        # seed 1/2 clients and seed 4 clients, on separate processes over Kafka and Redis
        assert await seed_client(ws_url(first.url, "/ws/audio")) == SILENCE
        echoes = await delayed_echo(ws_url(second.url, "/ws/echo"), chunks[:4], interval=0.1)
        assert [data for data, _ in echoes] == chunks[:4]
        assert all(0.99 <= lag < 2.0 for _, lag in echoes), echoes

        # a session with echo: first pod, then resumed on the second; the echoes follow it
        query = "/api/ws/audio?format=pcm&sample_rate=16000&echo=true&delay_ms=200"
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url(first.url, query)) as ws:
                session_id = (await ws.receive_json(timeout=10))["session_id"]
                got = await _stream_with_echo(ws, chunks[:4])
            assert got == chunks[:4]
            async with http.ws_connect(ws_url(second.url, f"/api/ws/audio/{session_id}")) as ws:
                assert (await ws.receive_json(timeout=10))["message"] == "Audio session resumed"
                got = await _stream_with_echo(ws, chunks[4:8])
                assert got == chunks[4:8]

                # the echo process dies; its replacement reads the session's settings from the store
                echo.kill()
                replacement = Process("echo", env, tmp_path)
                replacement.start()
                try:
                    await replacement.ready()
                    got = await _stream_with_echo(ws, chunks[8:], timeout=60)
                finally:
                    replacement.stop()
    # chunks sent while no echo process ran come back once the new one has the partition
    assert got == chunks[8:]


async def _stream_with_echo(
    ws: aiohttp.ClientWebSocketResponse, chunks: list[bytes], *, timeout: float = 10
) -> list[bytes]:
    """Send chunks on a session socket; every ack and every echo: the echoes, in arrival order."""
    for chunk in chunks:
        await ws.send_bytes(chunk)
    acks, echoes = 0, []
    async with asyncio.timeout(timeout):
        while acks < len(chunks) or len(echoes) < len(chunks):
            message = await ws.receive()
            if message.type == aiohttp.WSMsgType.TEXT:
                assert json.loads(message.data)["status"] == "active"
                acks += 1
            elif message.type == aiohttp.WSMsgType.BINARY:
                echoes.append(message.data)
            else:
                raise ConnectionClosed(None, None)
    return echoes
