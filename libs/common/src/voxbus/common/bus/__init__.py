"""The message bus: one interface, an in-process and an Apache Kafka implementation."""

from voxbus.common.bus.base import (
    Bus,
    BusError,
    CommitFailed,
    ConsumedRecord,
    Consumer,
    Delivered,
    RebalanceListener,
    TopicPartition,
)

__all__ = [
    "Bus",
    "BusError",
    "CommitFailed",
    "ConsumedRecord",
    "Consumer",
    "Delivered",
    "RebalanceListener",
    "TopicPartition",
]
