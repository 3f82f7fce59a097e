"""Ingest pods dying and restarting, over real Kafka and Redis with separate processes.

A SIGKILLed pod's slots and egress lease free themselves by TTL; SIGTERM closes sockets with
1012 so clients resume elsewhere; egress follows a client that reconnects to another pod.
"""

import asyncio
import signal
import time
import zlib
from pathlib import Path

import aiohttp

from tests.servers import Process, cluster, isolated_env, topic_prefix
from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.constants import Key
from voxbus.common.records import BusMessage
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint


def _env(tmp_path: Path, kafka: KafkaEndpoint, redis: RedisEndpoint, **extra: str) -> dict[str, str]:
    return isolated_env(tmp_path, kafka, redis, topic_prefix("fo"), **extra)


async def _egress_to(store: RedisStore, bus: KafkaBus, prefix: str, session_id: str, audio: bytes) -> str:
    """Produce to the session's current route, as echo does; returns the pod routed to."""
    route = await store.get(Key.ROUTE + session_id)
    assert route is not None
    pod, partition = route.split()
    message = BusMessage(key=session_id.encode(), value=audio, headers=(("t", b"chunk"),))
    await bus.send_and_wait(prefix + "egress", message, partition=int(partition))
    return pod


async def test_egress_follows_a_client_to_the_other_pod(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = _env(tmp_path, kafka_endpoint, redis_endpoint)
    prefix = env["TOPIC_PREFIX"]
    async with (
        cluster(env, tmp_path, ingests=2) as (first, second, *_),
        KafkaBus(kafka_endpoint.bootstrap_servers) as bus,
        RedisStore(env["REDIS_URL"]) as store,
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(f"{first.url}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
            session_id = (await ws.receive_json())["session_id"]
            assert (
                await _egress_to(store, bus, prefix, session_id, b"\x01\x00" * 160) == f"ingest-{first.port}"
            )
            assert await ws.receive_bytes(timeout=10) == b"\x01\x00" * 160
        async with http.ws_connect(f"{second.url}/api/ws/audio/{session_id}") as ws:
            assert (await ws.receive_json())["message"] == "Audio session resumed"
            assert (
                await _egress_to(store, bus, prefix, session_id, b"\x02\x00" * 160) == f"ingest-{second.port}"
            )
            assert await ws.receive_bytes(timeout=10) == b"\x02\x00" * 160


async def test_sigkilled_pod_frees_its_slots_and_egress_lease_by_ttl(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = _env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        LEASE_SECONDS="2",
        CONNECTION_TIMEOUT_SECONDS="3",
        MAX_CONCURRENT_SESSIONS="1",
        EGRESS_PARTITIONS="1",
    )
    async with (
        cluster(env, tmp_path, ingests=1) as (doomed, *_),
        RedisStore(env["REDIS_URL"]) as store,
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(f"{doomed.url}/api/ws/audio?format=pcm&sample_rate=16000")
        session_id = (await ws.receive_json())["session_id"]
        await ws.send_bytes(b"\x00\x01" * 1600)
        assert (await ws.receive_json())["chunk_count"] == 1
        assert await store.get(Key.EGRESS_LEASE + "0") == f"ingest-{doomed.port}"
        doomed.kill()
        killed_at = time.monotonic()
        await ws.close()

        successor = Process("ingest", env, tmp_path)
        successor.start()
        try:
            # with one egress partition, the successor is ready once the dead pod's lease expired
            await successor.ready()
            assert time.monotonic() - killed_at < 2 + 10
            assert await store.get(Key.EGRESS_LEASE + "0") == f"ingest-{successor.port}"
            # the dead pod's cluster slot expires with its lease: a new session fits again. The
            # slot and the egress lease were renewed in one round, so they expire within a few
            # ms of each other, in either order: try until a lease after the kill
            while True:
                async with http.ws_connect(f"{successor.url}/api/ws/audio?format=pcm") as accepted:
                    body = await accepted.receive_json()
                if body.get("error") != "Too many concurrent sessions" or time.monotonic() > killed_at + 4:
                    break
                await asyncio.sleep(0.1)  # the slot's Redis TTL runs out: real time is the subject
            assert body.get("message") == "Audio session created", (body, successor.log())
            # and its session, resumable until then, is stopped at the idle timeout

            async def finalized() -> bool:
                return await store.hget(Key.SESSION + session_id, "finalized") == "1"

            reaped = await store.wait_until(Key.SESSION_CHANNEL + session_id, finalized, timeout=20)
            assert reaped, "the dead pod's session was not reaped"
            assert await store.hget(Key.SESSION + session_id, "close_reason") == "idle"
        finally:
            successor.stop()


async def test_sigterm_closes_sockets_1012_and_the_client_resumes_elsewhere(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = _env(tmp_path, kafka_endpoint, redis_endpoint)
    async with cluster(env, tmp_path, ingests=2) as (first, second, *_), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{first.url}/api/ws/audio?format=pcm&sample_rate=16000")
        session_id = (await ws.receive_json())["session_id"]
        await ws.send_bytes(b"\x00\x01" * 1600)
        await ws.receive_json()
        assert first.process is not None
        first.process.send_signal(signal.SIGTERM)  # not first.signal: the client must read the close
        message = await ws.receive(timeout=30)
        assert (message.type, ws.close_code) == (aiohttp.WSMsgType.CLOSE, 1012)
        await asyncio.to_thread(first.process.wait, 30)
        assert first.process.returncode == 0
        async with http.ws_connect(f"{second.url}/api/ws/audio/{session_id}") as resumed:
            assert await resumed.receive_json() == {
                "message": "Audio session resumed",
                "session_id": session_id,
                "chunk_count": 1,
                "status": "active",
            }


async def test_a_pod_configured_for_more_egress_partitions_than_the_topic_has_uses_those_there_are(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    # the topic was made with 2 partitions (an earlier deployment); this pod is configured for 64,
    # and its name makes it try partition 2 or above first: it must lease one that exists
    env = _env(tmp_path, kafka_endpoint, redis_endpoint, EGRESS_PARTITIONS="2")
    async with KafkaBus(kafka_endpoint.bootstrap_servers) as bus:
        await bus.create_topics({env["TOPIC_PREFIX"] + "egress": 2})
    pod = next(f"wide-{n}" for n in range(100) if zlib.crc32(f"wide-{n}".encode()) % 64 >= 2)
    wide = Process("ingest", {**env, "EGRESS_PARTITIONS": "64", "POD_NAME": pod}, tmp_path)
    wide.start()
    try:
        await wide.ready(timeout=30)
        async with RedisStore(env["REDIS_URL"]) as store:
            held = [p for p in range(64) if await store.get(Key.EGRESS_LEASE + str(p)) == pod]
        assert held and held[0] < 2, held
    finally:
        wide.stop()
