"""A fresh cluster logs no ERROR while it starts: what Kafka makes it retry is not a failure.

On fresh topics every consumer asks for its partitions' offsets before the broker knows their
leaders (NotLeaderForPartition), and on a fresh broker it looks its group coordinator up before
one exists (GroupCoordinatorNotAvailable); aiokafka retries both.
"""

import json
from pathlib import Path

from tests.clients import record_with_aiohttp
from tests.servers import Process, cluster, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint


async def test_a_fresh_cluster_records_a_session_without_error_lines(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("sl"),  # fresh topics: their partitions have no known leader yet
        # the defaults: the more partitions are created at once, the longer their leaders take
        AUDIO_PARTITIONS="12",
        EGRESS_PARTITIONS="64",
        EVENTS_PARTITIONS="12",
    )
    # the writer first, alone: it creates the topics and asks for their offsets at once
    writer = Process("writer", env, tmp_path)
    writer.start()
    try:
        await writer.ready()
        async with cluster(env, tmp_path, ingests=1, services=("transcoder",)) as (ingest, transcoder):
            # once a session is recorded, every consumer has fetched its offsets and is consuming
            result = await record_with_aiohttp(
                f"{ingest.url}/api/ws/audio?format=pcm&sample_rate=16000", [b"\x01\x00" * 1600] * 3
            )
            assert result["closed"]["status"] == "completed", result
            for process in (writer, ingest, transcoder):
                log = (tmp_path / f"{process.name}-{process.port}-1.log").read_text()
                entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
                assert any(entry["msg"] == "listening" for entry in entries), log
                errors = [entry for entry in entries if entry["level"] in ("ERROR", "CRITICAL")]
                assert errors == [], f"{process.name} logged errors while starting"
    finally:
        writer.stop()
