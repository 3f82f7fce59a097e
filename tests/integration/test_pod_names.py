"""Two ingest processes over one Redis: a POD_NAME in use by a live process is refused at startup.

A pod name keys its egress lease and return routes; two live holders would take each other's.
"""

import asyncio
from pathlib import Path

from tests.servers import Process, isolated_env, topic_prefix
from voxbus.common.constants import Key
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint


async def test_a_second_process_with_a_live_pod_name_refuses_to_start(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("pn"),
        LEASE_SECONDS="2",
        POD_NAME="ingest-shared",
    )
    first, second = Process("ingest", env, tmp_path), Process("ingest", env, tmp_path)
    first.start()
    try:
        await first.ready()
        async with RedisStore(env["REDIS_URL"]) as store:
            second.start()
            assert second.process is not None
            try:
                code = await asyncio.wait_for(asyncio.to_thread(second.process.wait), timeout=20)
            except TimeoutError:
                raise AssertionError(f"the second holder of POD_NAME kept running: {second.log()}") from None
            assert code == 2, second.log()
            holder = await store.get(Key.POD + "ingest-shared")
            assert holder is not None
            assert "POD_NAME: 'ingest-shared' is in use by a live process" in second.log()
            await first.ready(timeout=5)  # the first is unharmed
            assert await store.get(Key.POD + "ingest-shared") == holder

            first.stop()  # a graceful stop gives the name back: the next process starts at once
            assert first.process is not None and first.process.returncode == 0
            assert await store.get(Key.POD + "ingest-shared") is None
            second.start()
            await second.ready()

            second.kill()  # a crash: the restarted process has the name once its lease ran out
            second.start()
            await second.ready()
            assert await store.get(Key.POD + "ingest-shared") not in (None, holder)
    finally:
        first.stop()
        second.stop()
