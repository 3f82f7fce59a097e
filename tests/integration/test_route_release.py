"""Return routes (`voxbus:route:{id}`) live exactly as long as a socket of the session on that pod.

A session that ended, a socket that dropped, an echo socket: their routes are gone from the store
and nothing renews them back. A session that moved to another pod: the old pod stops renewing
the route the new pod wrote, quietly (no ERROR, once).
"""

import asyncio
import json
import logging
import time
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.clients import CLOSE
from tests.servers import Process, cluster, embedded_app, isolated_env, topic_prefix
from voxbus.common.constants import Key
from voxbus.common.runtime import STORE
from voxbus.common.store.base import StateStore
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint
from voxbus.ingest.context import INGEST

PCM = b"\x01\x00" * 1600


async def _routes_left(store: StateStore, session_ids: list[str], timeout: float) -> dict[str, str]:
    """The routes still in the store once `timeout` passed (none: returns as soon as all are gone)."""
    deadline = time.monotonic() + timeout
    while True:
        left = {sid: route for sid in session_ids if (route := await store.get(Key.ROUTE + sid)) is not None}
        if not left or time.monotonic() > deadline:
            return left
        await asyncio.sleep(0.05)  # released by pods and TTLs; no event says a key is gone


async def test_routes_of_ended_dropped_and_echo_sockets_are_gone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        store, leases = app[STORE], app[INGEST].leases
        ws_base = base.replace("http", "ws")
        with caplog.at_level(logging.INFO, logger="voxbus.ingest"):
            async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
                closed = (await ws.receive_json())["session_id"]
                await ws.send_bytes(PCM)
                await ws.receive_json()
                assert await store.get(Key.ROUTE + closed) is not None  # while connected
                await ws.send_str(CLOSE)
                assert (await ws.receive_json(timeout=30))["status"] == "completed"
            async with http.ws_connect(f"{base}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
                left = (await ws.receive_json())["session_id"]  # closed by the client, no close_session
            async with connect(f"{ws_base}/api/ws/audio?format=pcm&sample_rate=16000") as dropped:
                hello = json.loads(await dropped.recv())
                await dropped.send(PCM)
                await dropped.recv()
                dropped.transport.abort()  # the network went away: no close frame
            async with connect(f"{ws_base}/ws/audio") as echo:  # the seed echo protocol
                await echo.send(PCM)
                assert await echo.recv(), "an echo"
            async with http.ws_connect(f"{base}/ws/echo") as ws:
                await ws.receive_json()
                await ws.send_str(json.dumps({"type": "ping"}))
                await ws.receive_json()

            sessions = [sid for sid, _ in await store.zrange(Key.SESSIONS_ALL)]
            assert {closed, left, hello["session_id"]} <= set(sessions) and len(sessions) == 5
            assert await _routes_left(store, sessions, timeout=5) == {}
            await leases.renew_all()  # what the renewal task does every third of the lease
            await leases.renew_all()
            assert await _routes_left(store, sessions, timeout=0) == {}
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


def _log_lines(process: Process) -> list[dict[str, object]]:
    lines = []
    for path in sorted(process.log_dir.glob(f"{process.name}-{process.port}-*.log")):
        for line in path.read_text().splitlines():
            if line.startswith("{"):
                lines.append(json.loads(line))
    return lines


async def test_a_pod_stops_renewing_routes_of_sessions_that_ended_or_moved(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("rr"),
        LEASE_SECONDS="2",  # renewals every 0.67 s
        MAX_CONNECTIONS_PER_SESSION="2",  # a resume on B while A still has the socket open
    )
    url = "/api/ws/audio?format=pcm&sample_rate=16000"
    async with (
        cluster(env, tmp_path, ingests=2) as (a, b, *_),
        RedisStore(env["REDIS_URL"]) as store,
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(a.url + url) as ws:
            ended = (await ws.receive_json())["session_id"]
            await ws.send_bytes(PCM)
            await ws.receive_json()
            await ws.send_str(CLOSE)
            assert (await ws.receive_json(timeout=60))["status"] == "completed"
        async with http.ws_connect(a.url + url) as ws:
            dropped = (await ws.receive_json())["session_id"]
        old = await http.ws_connect(a.url + url)
        moved = (await old.receive_json())["session_id"]
        await old.send_bytes(PCM)
        await old.receive_json()
        async with http.ws_connect(f"{b.url}/api/ws/audio/{moved}") as resumed:
            assert (await resumed.receive_json())["message"] == "Audio session resumed"
            assert (await store.get(Key.ROUTE + moved) or "").startswith(f"ingest-{b.port} ")
            # A's next renewal finds B's route: A lets it go (said once, at INFO)
            deadline = time.monotonic() + 10
            while not any(
                line.get("key") == Key.ROUTE + moved or line.get("level") == "ERROR" for line in _log_lines(a)
            ):
                assert time.monotonic() < deadline, f"A never noticed the route moved: {a.log()}"
                await asyncio.sleep(0.1)  # another process's log: read it again
            await old.close()  # A's stale socket goes away while B streams
            await resumed.send_bytes(PCM)
            assert "chunk_count" in await resumed.receive_json()  # acked on B
            assert (await store.get(Key.ROUTE + moved) or "").startswith(f"ingest-{b.port} ")

        sessions = [ended, dropped, moved]
        assert await _routes_left(store, sessions, timeout=5) == {}
        # two renewal rounds on each pod (other processes, renewing every LEASE_SECONDS / 3): a
        # route that came back would come back within them
        await asyncio.sleep(1.5)
        assert await _routes_left(store, sessions, timeout=0) == {}
        errors = [line for line in _log_lines(a) + _log_lines(b) if line.get("level") == "ERROR"]
        assert errors == []
        taken_over = [line for line in _log_lines(a) if line.get("key") == Key.ROUTE + moved]
        assert len(taken_over) == 1, taken_over
