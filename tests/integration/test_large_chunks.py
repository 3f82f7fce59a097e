"""A chunk as large as the message limit is recorded over real Kafka, as it is embedded: Kafka
refuses records over about 1 MiB unless its producer and topics are told otherwise."""

import asyncio
import json
import uuid
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from prometheus_client import REGISTRY

from tests.helpers import message
from tests.servers import cluster, embedded, isolated_env, topic_prefix
from voxbus.common.bus.kafka import KafkaBus
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
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("big"))
    async with cluster(env, tmp_path) as (ingest, *_):
        closed = await _record_one_full_chunk(ingest.url)
    assert (closed["status"], closed["duration_seconds"]) == ("completed", LIMIT / 2 / 16000)


async def test_a_topic_taking_smaller_records_limits_chunks_and_harms_no_other_session(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    # the raw topic was made before, with Kafka's default record limit (about 1 MiB), and this
    # deployment takes 2 MiB messages. A record the broker refused would break the producer's
    # sequence on its partition: every later chunk there, of every session, would fail
    prefix = f"refused-{uuid.uuid4().hex[:8]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_endpoint.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(prefix + "audio.raw", num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        prefix,
        MAX_MESSAGE_SIZE_BYTES=str(2 * LIMIT),
        MAX_CHUNK_SIZE_MB="2",
    )
    small, big = b"\x01\x00" * 1600, b"\x02\x00" * (3 * LIMIT // 4)
    url = "/api/ws/audio?format=pcm&sample_rate=16000"
    async with cluster(env, tmp_path) as (ingest, *_), aiohttp.ClientSession() as http:
        ws_url = ingest.url.replace("http", "ws") + url
        async with http.ws_connect(ws_url) as bystander, http.ws_connect(ws_url) as sender:
            await bystander.receive_json()
            await sender.receive_json()
            await sender.send_bytes(big)
            refusal = await sender.receive_json()
            assert (await sender.receive()).data == 1009
            for _ in range(3):  # on the same partition (the topic has one)
                await bystander.send_bytes(small)
                assert (await bystander.receive_json())["message"] == "Chunk processed successfully"
            await bystander.send_str(json.dumps({"type": "control", "action": "close_session"}))
            closed = await bystander.receive_json()
    assert refusal["error"] == "Chunk too large"
    assert LIMIT - 64 * 1024 <= refusal["max_size"] < LIMIT + 64, refusal  # the topic's, less framing
    assert (closed["status"], closed["duration_seconds"]) == ("completed", 3 * 1600 / 16000)


async def test_after_a_record_the_broker_refused_later_records_land_again(
    kafka_endpoint: KafkaEndpoint, unique: str
) -> None:
    # a failed delivery breaks the idempotent producer's sequence on its partition: without a
    # new producer every later record there fails (OutOfOrderSequenceNumber) until a restart
    topic = f"seq-{unique}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_endpoint.bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    async with KafkaBus(kafka_endpoint.bootstrap_servers, max_value_bytes=2 * LIMIT) as bus:
        await bus.send_and_wait(topic, message("s", b"before"), partition=0)
        with pytest.raises(KafkaError):  # over the topic's default limit: the broker refuses it
            await bus.send_and_wait(topic, message("s", bytes(3 * LIMIT // 2)), partition=0)
        failed = 0
        async with asyncio.timeout(30):
            while True:  # the records sent while the producer is replaced may fail too
                try:
                    await bus.send_and_wait(topic, message("s", b"after"), partition=0)
                    break
                except KafkaError:
                    failed += 1
        for n in range(5):
            await bus.send_and_wait(topic, message("s", f"later {n}".encode()), partition=0)
    assert failed <= 3
    # an operator sees each refused record on the produce-errors counter, by topic and stage
    errors = {
        stage: REGISTRY.get_sample_value("voxbus_bus_produce_errors_total", {"topic": topic, "stage": stage})
        for stage in ("send", "delivery")
    }
    assert errors == {"send": 0.0, "delivery": 1.0 + failed}
