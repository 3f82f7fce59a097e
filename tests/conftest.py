"""Fixtures shared by every test: real Kafka and Redis, and the bus/store under contract.

Kafka and Redis come from the environment, testcontainers, or local processes (see
`voxbus.devinfra`). When none can be had the tests that need them FAIL with the fix in the message.
"""

import gc
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from typing import TypeVar
from unittest import mock

import pytest

from voxbus.common.bus.base import Bus
from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.store.base import StateStore
from voxbus.common.store.memory import InProcessStore
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint, provide_kafka, provide_redis

# Engines the developer points the tests at; read now, before any test clears the environment.
AMBIENT_INFRA = {
    name: value for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL") if (value := os.environ.get(name))
}
_T = TypeVar("_T")
BUS_BACKENDS = ["memory", "kafka"]
STORE_BACKENDS = ["memory", "redis"]


@pytest.fixture(autouse=True)
def _no_ambient_infra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their backends explicitly; the developer's shell must not choose for them."""
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "API_KEY", "PORT"):
        monkeypatch.delenv(name, raising=False)


# what each engine was, and how long it took to provide, for the run's summary
_PROVIDED: dict[str, str] = {}


def _provided(stack: ExitStack, name: str, provide: Callable[[], AbstractContextManager[_T]]) -> _T:
    started = time.monotonic()
    with mock.patch.dict(os.environ, AMBIENT_INFRA):
        endpoint = stack.enter_context(provide())
    _PROVIDED[name] = f"{endpoint!r} ready in {time.monotonic() - started:.1f} s"
    return endpoint


@pytest.fixture(scope="session")
def kafka_endpoint() -> Iterator[KafkaEndpoint]:
    with ExitStack() as stack:
        yield _provided(stack, "kafka", provide_kafka)


@pytest.fixture(scope="session")
def redis_endpoint() -> Iterator[RedisEndpoint]:
    with ExitStack() as stack:
        yield _provided(stack, "redis", provide_redis)


@pytest.fixture
def steady_client() -> Iterator[None]:
    """For a test that times what voxbus sends: no garbage collection in the test's own process
    (the measuring client) until it ends. Late in a suite pytest holds millions of objects, and a
    full collection there stops the client for tens of milliseconds: a frame read that late looks
    like voxbus's jitter. voxbus's own processes keep their startup heap out of collections
    (`voxbus.common.runtime.serve`), so what is measured is the server's timing."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@pytest.fixture
def unique() -> str:
    """A short id that keeps this test's topics, groups and keys apart from every other test's."""
    return uuid.uuid4().hex[:10]


@pytest.fixture(params=BUS_BACKENDS)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[Bus]:
    backend: Bus
    if request.param == "kafka":
        endpoint: KafkaEndpoint = request.getfixturevalue("kafka_endpoint")
        backend = KafkaBus(endpoint.bootstrap_servers, linger_ms=2)
    else:
        backend = InProcessBus()
    async with backend:
        yield backend


@pytest.fixture(params=STORE_BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    backend: StateStore
    if request.param == "redis":
        endpoint: RedisEndpoint = request.getfixturevalue("redis_endpoint")
        backend = RedisStore(endpoint.url)
    else:
        backend = InProcessStore()
    async with backend:
        yield backend


def pytest_report_header() -> list[str]:
    kafka = AMBIENT_INFRA.get("KAFKA_BOOTSTRAP_SERVERS", "testcontainers or a local broker")
    redis = AMBIENT_INFRA.get("REDIS_URL", "testcontainers or a local redis-server")
    return [f"voxbus infra: kafka={kafka} redis={redis}"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for name, text in _PROVIDED.items():
        terminalreporter.write_line(f"voxbus infra: {name}: {text}")
