"""The bus contract (docs/architecture.md, the bus): keyed, partitioned, ordered topics with consumer groups.

Two implementations pass one contract suite: `memory.InProcessBus` (one process, nothing to
install) and `kafka.KafkaBus` (Apache Kafka via aiokafka). Services only see these types.

Offsets follow Kafka's convention: a committed offset is the NEXT offset to consume. A group
consumer starts each newly assigned partition at the group's committed offset, or at the earliest
retained record when the group has none. After `on_partitions_revoked(P)` the consumer yields no
more records of P until `on_partitions_assigned(P)` hands it back (eager backends revoke and
re-assign every partition at each rebalance; both are valid under this contract).
"""

import asyncio
import functools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Protocol, Self

from aiokafka.partitioner import murmur2

from voxbus.common.records import BusMessage, Headers


@functools.lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (murmur2, as the Java client), cached: a session's key is
    partitioned for every one of its records, and murmur2 in Python costs ~15 µs."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass(frozen=True, slots=True, order=True)
class TopicPartition:
    topic: str
    partition: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsumedRecord:
    """One record as a consumer sees it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


class Delivered(Protocol):
    """Where a produced record landed; available once the record is durable."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


class RebalanceListener(Protocol):
    """Told when a group consumer's partitions change; both calls may commit."""

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None: ...


class BusError(Exception):
    """The bus could not do what was asked (unknown topic, broker unreachable, …)."""


class CommitFailed(BusError):
    """A commit for partitions this consumer no longer owns (the group rebalanced)."""


class Consumer(ABC):
    """Reads records: as a member of a group, or one assigned partition from its end."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def getmany(self, *, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumedRecord]:
        """Records available now (waiting up to `timeout_ms` for the first), in offset order per partition."""

    @abstractmethod
    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record for the group that consumption of each partition resumes at the given offset."""

    @abstractmethod
    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions this consumer currently reads."""

    @abstractmethod
    def joined(self) -> bool:
        """Whether the consumer holds its group's current assignment and can read it: joined, and a
        position known for every assigned partition. The assignment may be empty (a group with
        more members than partitions). A partition tail has joined once started."""

    @abstractmethod
    def position(self, tp: TopicPartition) -> int | None:
        """The offset of the next record `getmany` returns from `tp`; None while unknown or unassigned."""

    @abstractmethod
    def high_watermark(self, tp: TopicPartition) -> int | None:
        """The offset the next record produced to `tp` will get, as last known (Kafka learns it from
        its fetches, so it may trail slightly); None while unknown or unassigned.

        `high_watermark - position` is the consumer's lag on `tp`, in records.
        """

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


class Bus(ABC):
    """Produce to and consume from topics; one instance per process, shared by its services."""

    # a consumer's commit is a request to a broker (Kafka's); in process it is a call that frees
    # the records every group has read, so committing seldom would only hold memory
    commit_is_a_request: ClassVar[bool] = False

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None:
        """Flush what was sent, then release connections."""

    @abstractmethod
    async def ping(self) -> None:
        """Return if the bus is reachable; raise `BusError` otherwise."""

    @abstractmethod
    async def create_topics(self, partitions: Mapping[str, int]) -> None:
        """Create the topics that do not exist yet, with the given partition counts."""

    @abstractmethod
    async def partition_count(self, topic: str) -> int: ...

    @abstractmethod
    async def record_limit(self, topic: str) -> int | None:
        """The largest record value `topic` takes (None: no limit). A larger one is refused."""

    @abstractmethod
    async def send(
        self, topic: str, message: BusMessage, *, partition: int | None = None
    ) -> "asyncio.Future[Delivered]":
        """Queue a record (batched) and return a future that resolves once it is durable.

        Without `partition` the key chooses it (Kafka's murmur2 partitioner, on both backends).
        """

    async def send_and_wait(
        self, topic: str, message: BusMessage, *, partition: int | None = None
    ) -> Delivered:
        return await (await self.send(topic, message, partition=partition))

    @abstractmethod
    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str,
        listener: RebalanceListener | None = None,
        batch_ms: int = 0,
    ) -> Consumer:
        """A consumer-group member over `topics` with manual commits. `batch_ms`: how long the
        broker may hold a fetch to fill it (records then come in fewer, fuller batches, each up
        to that much later); 0: as soon as there is one."""

    @abstractmethod
    def partition_tail(self, topic: str, partition: int) -> Consumer:
        """A consumer of one partition, from its end at start; it has no group and cannot commit."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
