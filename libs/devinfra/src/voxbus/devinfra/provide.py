"""Provide Kafka and Redis from the first source that works: environment, Docker, local process."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Final

from voxbus.devinfra.containers import kafka_container, redis_container
from voxbus.devinfra.docker_engine import docker_engine_problem
from voxbus.devinfra.endpoints import (
    SOURCE_ENV,
    SOURCE_LOCAL,
    SOURCE_TESTCONTAINERS,
    KafkaEndpoint,
    RedisEndpoint,
)
from voxbus.devinfra.errors import InfraUnavailable
from voxbus.devinfra.kafka_local import local_kafka
from voxbus.devinfra.redis_local import local_redis

logger = logging.getLogger(__name__)

KAFKA_ENV: Final = "KAFKA_BOOTSTRAP_SERVERS"
REDIS_ENV: Final = "REDIS_URL"

KAFKA_HOW_TO: Final = (
    f"Kafka: set {KAFKA_ENV}=host:port, or start a Docker engine (testcontainers), or install "
    "java 17+ and maven (apt-get install -y openjdk-17-jre-headless maven) so the broker jars "
    "can be fetched from Maven Central"
)
REDIS_HOW_TO: Final = (
    f"Redis: set {REDIS_ENV}=redis://host:port/0, or start a Docker engine (testcontainers), "
    "or install the redis-server package (apt-get install -y redis-server)"
)

_Source = tuple[str, Callable[[], contextlib.AbstractContextManager[str]]]


def _start_first(
    stack: contextlib.ExitStack, what: str, how_to: str, sources: list[_Source]
) -> tuple[str, str]:
    """Enter the first source that starts (its exit goes on `stack`): (address, source name)."""
    reasons: list[str] = []
    problem = docker_engine_problem()
    for name, start in sources:
        if name == SOURCE_TESTCONTAINERS and problem is not None:
            reasons.append(f"{name}: {problem}")
            continue
        try:
            address = stack.enter_context(start())
        except Exception as exc:  # any failure of one source means: try the next one
            logger.warning("%s from %s failed: %s", what, name, exc)
            reasons.append(f"{name}: {exc}")
            continue
        return address, name
    raise InfraUnavailable(f"{how_to}.\nWhy each source failed:\n" + "\n".join(f"- {r}" for r in reasons))


@contextlib.contextmanager
def _provide(env: str, what: str, how_to: str, sources: list[_Source]) -> Iterator[tuple[str, str]]:
    """(address, source name): $env as it is, else the first of `sources` that starts."""
    from_env = os.environ.get(env, "").strip()
    if from_env:
        logger.info("%s from %s: %s", what, env, from_env)
        yield from_env, SOURCE_ENV
        return
    with contextlib.ExitStack() as stack:
        yield _start_first(stack, what, how_to, sources)


@contextlib.contextmanager
def provide_kafka() -> Iterator[KafkaEndpoint]:
    """A Kafka cluster for the `with` block: $KAFKA_BOOTSTRAP_SERVERS, else an apache/kafka
    container, else a local broker; what was started is stopped on exit."""
    sources: list[_Source] = [(SOURCE_TESTCONTAINERS, kafka_container), (SOURCE_LOCAL, local_kafka)]
    with _provide(KAFKA_ENV, "Kafka", KAFKA_HOW_TO, sources) as (address, source):
        yield KafkaEndpoint(bootstrap_servers=address, source=source)


@contextlib.contextmanager
def provide_redis() -> Iterator[RedisEndpoint]:
    """A Redis server for the `with` block: $REDIS_URL, else a redis:7 container, else a
    local redis-server; what was started is stopped on exit."""
    sources: list[_Source] = [(SOURCE_TESTCONTAINERS, redis_container), (SOURCE_LOCAL, local_redis)]
    with _provide(REDIS_ENV, "Redis", REDIS_HOW_TO, sources) as (address, source):
        yield RedisEndpoint(url=address, source=source)
