"""A chunk as large as the message limit is recorded over real Kafka, as it is embedded: Kafka
refuses records over about 1 MiB unless its producer and topics are told otherwise."""

import json
import uuid
from pathlib import Path

import aiohttp
import numpy as np

from tests.servers import cluster, distributed_env, embedded, fresh_redis_db
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

LIMIT = 1024 * 1024  # MAX_MESSAGE_SIZE_BYTES' default


async def _record_one_full_chunk(base: str) -> dict[str, object]:
    audio = np.arange(LIMIT // 2, dtype=np.int16).tobytes()
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base.replace('http', 'ws')}/api/ws/audio?format=pcm&sample_rate=16000") as ws,
    ):
        await ws.receive_json()
        await ws.send_bytes(audio)
        ack = await ws.receive_json()
        assert ack["message"] == "Chunk processed successfully", ack
        await ws.send_str(json.dumps({"type": "control", "action": "close_session"}))
        closed: dict[str, object] = await ws.receive_json()
    return closed


async def test_a_chunk_of_the_full_message_size_is_recorded_embedded(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base:
        closed = await _record_one_full_chunk(base)
    assert (closed["status"], closed["duration_seconds"]) == ("completed", LIMIT / 2 / 16000)


async def test_a_chunk_of_the_full_message_size_is_recorded_over_kafka(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = distributed_env(
        kafka_endpoint.bootstrap_servers,
        fresh_redis_db(redis_endpoint.url),
        tmp_path / "audio",
        f"big-{uuid.uuid4().hex[:8]}.",
    )
    async with cluster(env, tmp_path) as (ingest, *_):
        closed = await _record_one_full_chunk(ingest.url)
    assert (closed["status"], closed["duration_seconds"]) == ("completed", LIMIT / 2 / 16000)
