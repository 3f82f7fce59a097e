"""Choose the backends from settings: Kafka/Redis when configured, in-process otherwise
(docs/architecture.md, what runs where)."""

from voxbus.common.bus.base import Bus
from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.settings import Settings
from voxbus.common.store.base import StateStore
from voxbus.common.store.memory import InProcessStore
from voxbus.common.store.redis import RedisStore


def make_bus(settings: Settings) -> Bus:
    if settings.kafka_bootstrap_servers:
        return KafkaBus(
            settings.kafka_bootstrap_servers,
            replication_factor=settings.kafka_replication_factor,
            linger_ms=settings.kafka_linger_ms,
            client_id=f"voxbus-{settings.pod_name}",
            max_value_bytes=settings.max_message_size_bytes,
        )
    return InProcessBus(max_unread_bytes=settings.memory_bus_max_unread_bytes)


def make_store(settings: Settings) -> StateStore:
    if settings.redis_url:
        return RedisStore(settings.redis_url)
    return InProcessStore()
