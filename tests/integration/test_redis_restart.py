"""The Redis store across a Redis restart (a Redis of the test's own, stopped and started again on
its port): once Redis answers again, so does every command, and pub/sub notices reach their
listeners again. Found by the fault tests (tests/faults/test_infra_faults.py): after a 10 s
outage each pooled connection failed its next command, and the process's one pub/sub reader had
died, so every close waited its full CLOSE_TIMEOUT_SECONDS for a notice that never came."""

import asyncio
from collections.abc import Iterator

import pytest

from voxbus.common.store.redis import RedisStore
from voxbus.devinfra.errors import SourceFailed
from voxbus.devinfra.provide import REDIS_HOW_TO
from voxbus.devinfra.redis_local import LocalRedis

POOLED = 8  # connections the store holds when Redis goes away


@pytest.fixture
def own_redis() -> Iterator[LocalRedis]:
    try:
        with LocalRedis() as server:
            server.start()
            yield server
    except SourceFailed as exc:
        pytest.fail(f"this test needs a local redis-server of its own: {REDIS_HOW_TO}.\n{exc}")


async def _restart(server: LocalRedis) -> None:
    await asyncio.to_thread(server.stop)
    await asyncio.to_thread(server.start)


async def test_every_pooled_connection_works_again_once_redis_is_back(own_redis: LocalRedis) -> None:
    async with RedisStore(own_redis.url) as store:
        await asyncio.gather(*(store.set(f"key-{n}", "before") for n in range(POOLED)))
        await _restart(own_redis)
        results = await asyncio.gather(
            *(store.set(f"key-{n}", "after") for n in range(POOLED)), return_exceptions=True
        )
    assert results == [True] * POOLED, results


async def test_pub_sub_reaches_its_listeners_again_once_redis_is_back(own_redis: LocalRedis) -> None:
    async with RedisStore(own_redis.url) as store, RedisStore(own_redis.url) as publisher:
        async with store.subscribe("heard-before") as before:
            await publisher.publish("heard-before", "one")
            assert (await before.get(timeout=5)) is not None
            await asyncio.to_thread(own_redis.stop)
            await asyncio.sleep(1.5)  # Redis stays away while the listener waits on
            await asyncio.to_thread(own_redis.start)
            # a listener is woken when the connection is back: what was published meanwhile is
            # lost, so it looks again at what it waits for
            woken = await before.get(timeout=5)
            assert woken is not None, "the listener was not told that Redis was back"
            await publisher.publish("heard-before", "two")
            assert (await before.get(timeout=5)) is not None, "a channel subscribed before the outage"
        async with store.subscribe("heard-after") as after:
            await publisher.publish("heard-after", "three")
            heard = await after.get(timeout=5)
    assert heard is not None and heard.data == "three", "a channel subscribed after the outage"
