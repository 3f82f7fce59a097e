"""Where a provided Kafka or Redis can be reached, and which source provided it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

SOURCE_ENV: Final = "env"
SOURCE_TESTCONTAINERS: Final = "testcontainers"
SOURCE_LOCAL: Final = "local"


@dataclass(frozen=True, slots=True)
class KafkaEndpoint:
    """A Kafka cluster: `bootstrap_servers` as aiokafka takes it ("host:port[,host:port]")."""

    bootstrap_servers: str
    source: str  # SOURCE_ENV, SOURCE_TESTCONTAINERS or SOURCE_LOCAL


@dataclass(frozen=True, slots=True)
class RedisEndpoint:
    """A Redis server: `url` as redis.Redis.from_url takes it ("redis://host:port/0")."""

    url: str
    source: str  # SOURCE_ENV, SOURCE_TESTCONTAINERS or SOURCE_LOCAL
