"""Readiness probes: does a Kafka cluster or a Redis server answer a real request?"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import redis
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped,unused-ignore]

T = TypeVar("T")

_KAFKA_PROBE_TIMEOUT_S = 5.0
_REDIS_PROBE_TIMEOUT_S = 1.0


def run_coroutine(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to the end from sync code, even if this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _describe_cluster(bootstrap_servers: str, timeout: float) -> None:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        request_timeout_ms=int(timeout * 1000),
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        await asyncio.wait_for(admin.describe_cluster(), timeout)
    finally:
        await admin.close()


def kafka_answers(bootstrap_servers: str, timeout: float = _KAFKA_PROBE_TIMEOUT_S) -> bool:
    """Whether the cluster answers an admin DescribeCluster request."""
    # aiokafka logs each refused connection at ERROR; while polling, those are expected
    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        run_coroutine(_describe_cluster(bootstrap_servers, timeout))
    except Exception:
        return False
    finally:
        quiet.setLevel(level)
    return True


def redis_answers(url: str, timeout: float = _REDIS_PROBE_TIMEOUT_S) -> bool:
    """Whether the server answers PING."""
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        with contextlib.suppress(redis.RedisError):
            client.close()
