"""In-process bus: Kafka's topic/partition/key/offset semantics inside one event loop.

Records live in memory per partition. Retention is bounded in bytes as well as records, so that
what the process holds does not depend on how large its records are:
- records every group reading the topic has committed past are dropped, as soon as they are
  `_TRIM_BATCH` records or `_TRIM_BYTES` bytes (whichever comes first);
- a topic no group reads (egress is only tailed) drops what every tail of the partition has read,
  and keeps at most its newest `retain_ungrouped` records and `retain_ungrouped_bytes` bytes per
  partition for a tail that lags, or for a group that joins later (past that they skip the oldest).
With `max_unread_bytes` (as `voxbus up` makes it), a producer waits while a partition holds that
many bytes its slowest running group has not read: a reader that falls behind slows producers
down (and so, through ingest's acks, the clients), where Kafka would keep the backlog on disk.
A group consumer made with `batch_ms` returns a batch at most that often, as a Kafka fetch held to
fill does (the first after a quiet spell at once). `retained_bytes()` tells what the bus holds. A
partition moves between members of a group only after its previous owner has run its revocation
hook, so two members never read one partition at once.
"""

import asyncio
import bisect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from voxbus.common.bus.base import (
    Bus,
    BusError,
    CommitFailed,
    ConsumedRecord,
    Consumer,
    Delivered,
    RebalanceListener,
    TopicPartition,
    partition_for,
)
from voxbus.common.records import BusMessage

# trim in batches (of records or of bytes) so dropping old records stays amortized O(1)
_TRIM_BATCH = 1024
_TRIM_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class _Delivered:
    topic: str
    partition: int
    offset: int


def _size(record: ConsumedRecord) -> int:
    key = len(record.key) if record.key is not None else 0
    return key + len(record.value) + sum(len(name) + len(value) for name, value in record.headers)


@dataclass(slots=True)
class _Partition:
    base: int = 0  # offset of records[0]
    records: list[ConsumedRecord] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)  # bytes appended up to and including each record
    trimmed: int = 0  # bytes appended before records[0]

    @property
    def end(self) -> int:
        return self.base + len(self.records)

    @property
    def retained_bytes(self) -> int:
        return self.ends[-1] - self.trimmed if self.ends else 0

    def append(self, record: ConsumedRecord) -> None:
        self.records.append(record)
        self.ends.append((self.ends[-1] if self.ends else self.trimmed) + _size(record))

    def bytes_from(self, offset: int) -> int:
        """Bytes of the records from `offset` to the end."""
        index = offset - self.base
        if not self.ends or index >= len(self.ends):
            return 0
        return self.ends[-1] - (self.ends[index - 1] if index > 0 else self.trimmed)

    def read(self, position: int, limit: int) -> list[ConsumedRecord]:
        start = max(position, self.base) - self.base
        return self.records[start : start + limit]

    def newest_within(self, records: int, size: int) -> int:
        """The lowest offset from which the partition holds at most `records` records and `size` bytes."""
        if not self.ends:
            return self.base
        within_size = bisect.bisect_left(self.ends, self.ends[-1] - size) + 1
        if self.ends[-1] - size <= self.trimmed:
            within_size = 0
        return self.base + max(len(self.records) - records, within_size, 0)

    def trim_below(self, offset: int) -> None:
        drop = min(offset, self.end) - self.base
        if drop <= 0:
            return
        if drop >= _TRIM_BATCH or self.ends[drop - 1] - self.trimmed >= _TRIM_BYTES:
            self.trimmed = self.ends[drop - 1]
            del self.records[:drop]
            del self.ends[:drop]
            self.base += drop


@dataclass(slots=True)
class _Group:
    topics: frozenset[str]
    members: list["_GroupConsumer"] = field(default_factory=list)
    generation: int = 0
    targets: dict["_GroupConsumer", frozenset[TopicPartition]] = field(default_factory=dict)
    owners: dict[TopicPartition, "_GroupConsumer"] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)


class InProcessBus(Bus):
    """The embedded bus: shared by every service of a `voxbus up` process."""

    def __init__(
        self,
        *,
        retain_ungrouped: int = 10_000,
        retain_ungrouped_bytes: int = 4 * 1024 * 1024,
        max_unread_bytes: int | None = None,
    ) -> None:
        """`max_unread_bytes`: a producer waits while a partition holds this many bytes its
        slowest running group has not read (Kafka keeps a backlog on disk; this bus would keep
        it in memory, so a reader that falls behind slows the producers down instead)."""
        self._max_unread_bytes = max_unread_bytes
        self._read = asyncio.Event()  # set (and replaced) whenever a group reads or rebalances
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._tails: dict[TopicPartition, set[_TailConsumer]] = {}
        self._retain_ungrouped = retain_ungrouped
        self._retain_ungrouped_bytes = retain_ungrouped_bytes
        self._changed = asyncio.Event()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def create_topics(self, partitions: Mapping[str, int]) -> None:
        for topic, count in partitions.items():
            if count < 1:
                raise BusError(f"topic {topic!r} needs at least one partition, got {count}")
            self._topics.setdefault(topic, [_Partition() for _ in range(count)])

    async def partition_count(self, topic: str) -> int:
        return len(self._partitions(topic))

    async def record_limit(self, topic: str) -> int | None:
        self._partitions(topic)
        return None

    async def send(
        self, topic: str, message: BusMessage, *, partition: int | None = None
    ) -> "asyncio.Future[Delivered]":
        partitions = self._partitions(topic)
        if partition is None:
            partition = partition_for(message.key, len(partitions))
        elif not 0 <= partition < len(partitions):
            raise BusError(f"topic {topic!r} has no partition {partition}")
        log = partitions[partition]
        if self._max_unread_bytes is not None:
            await self._room_for(TopicPartition(topic, partition), log, self._max_unread_bytes)
        record = ConsumedRecord(
            topic=topic,
            partition=partition,
            offset=log.end,
            key=message.key,
            value=message.value,
            headers=message.headers,
            timestamp_ms=time.time_ns() // 1_000_000,
        )
        log.append(record)
        if not self._is_grouped(topic):
            self._trim_ungrouped(TopicPartition(topic, partition), log)
        self._notify()
        future: asyncio.Future[Delivered] = asyncio.get_running_loop().create_future()
        future.set_result(_Delivered(topic, partition, record.offset))
        return future

    def retained_bytes(self) -> int:
        """Bytes of every record the bus holds (keys, values and headers)."""
        return sum(log.retained_bytes for partitions in self._topics.values() for log in partitions)

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str,
        listener: RebalanceListener | None = None,
        batch_ms: int = 0,
    ) -> Consumer:
        return _GroupConsumer(self, frozenset(topics), group_id, listener, batch_ms=batch_ms)

    def partition_tail(self, topic: str, partition: int) -> Consumer:
        return _TailConsumer(self, TopicPartition(topic, partition))

    # -- used by the consumers -------------------------------------------------------------

    def _partitions(self, topic: str) -> list[_Partition]:
        try:
            return self._topics[topic]
        except KeyError:
            raise BusError(f"unknown topic {topic!r}") from None

    def _log(self, tp: TopicPartition) -> _Partition:
        partitions = self._partitions(tp.topic)
        if not 0 <= tp.partition < len(partitions):
            raise BusError(f"topic {tp.topic!r} has no partition {tp.partition}")
        return partitions[tp.partition]

    def _is_grouped(self, topic: str) -> bool:
        return any(topic in group.topics for group in self._groups.values())

    async def _room_for(self, tp: TopicPartition, log: _Partition, limit: int) -> None:
        """Wait while the slowest running group has `limit` bytes of `tp` still to read."""
        while log.bytes_from(self._slowest_reader(tp, log)) >= limit:
            await self._read.wait()

    def _slowest_reader(self, tp: TopicPartition, log: _Partition) -> int:
        """The lowest offset a group with members reads `tp` from next (the end if none)."""
        lowest = log.end
        for group in self._groups.values():
            if tp.topic not in group.topics or not group.members:
                continue
            owner = group.owners.get(tp)
            position = owner.position(tp) if owner is not None else None
            lowest = min(lowest, position if position is not None else group.committed.get(tp, log.base))
        return lowest

    def _was_read(self) -> None:
        """Wake producers waiting for room: a group read, or its partitions moved."""
        self._read.set()
        self._read = asyncio.Event()

    def _notify(self) -> None:
        """Wake every waiting consumer: new records, or a group changed."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait_change(self, timeout: float) -> None:
        if timeout <= 0:
            return
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the event is set, and this event is set on every record.
        try:
            async with asyncio.timeout(timeout):
                await self._changed.wait()
        except TimeoutError:
            return

    def _join(self, group_id: str, member: "_GroupConsumer") -> _Group:
        group = self._groups.get(group_id)
        if group is None:
            group = self._groups[group_id] = _Group(topics=member.topics)
        elif group.topics != member.topics:
            raise BusError(f"group {group_id!r} subscribes to {sorted(group.topics)}")
        group.members.append(member)
        self._rebalance(group)
        return group

    def _leave(self, group: _Group, member: "_GroupConsumer") -> None:
        group.members.remove(member)
        for tp, owner in list(group.owners.items()):
            if owner is member:
                del group.owners[tp]
        self._rebalance(group)

    def _rebalance(self, group: _Group) -> None:
        """Round-robin the group's partitions over its members, in join order."""
        tps = sorted(
            TopicPartition(topic, index)
            for topic in group.topics
            for index in range(len(self._partitions(topic)))
        )
        group.generation += 1
        group.targets = {
            member: frozenset(tps[position :: len(group.members)])
            for position, member in enumerate(group.members)
        }
        self._notify()
        self._was_read()

    def _trim_ungrouped(self, tp: TopicPartition, log: _Partition) -> None:
        """Drop what every tail has read, and what a lagging tail (or a group yet to join) may no
        longer hold back."""
        floor = log.newest_within(self._retain_ungrouped, self._retain_ungrouped_bytes)
        tails = self._tails.get(tp)
        if tails:
            floor = max(floor, min(tail.reading_from for tail in tails))
        log.trim_below(floor)

    def _trim(self, group: _Group, tp: TopicPartition) -> None:
        floor = min(
            (g.committed.get(tp, 0) for g in self._groups.values() if tp.topic in g.topics),
            default=0,
        )
        self._log(tp).trim_below(floor)


class _GroupConsumer(Consumer):
    def __init__(
        self,
        bus: InProcessBus,
        topics: frozenset[str],
        group_id: str,
        listener: RebalanceListener | None,
        *,
        batch_ms: int = 0,
    ) -> None:
        self.topics = topics
        self._bus = bus
        # a batch at most every batch_ms, as a Kafka fetch held to fill: in process a record costs
        # no fetch, but a handler's batch has fixed costs of its own (the writer fsyncs every file
        # it appended to), which records taken one by one would pay per record
        self._gather = batch_ms / 1000
        self._last_batch = -math.inf
        self._group_id = group_id
        self._listener = listener
        self._group: _Group | None = None
        self._generation = 0
        self._positions: dict[TopicPartition, int] = {}

    async def start(self) -> None:
        for topic in self.topics:
            self._bus._partitions(topic)
        self._group = self._bus._join(self._group_id, self)

    async def stop(self) -> None:
        if self._group is not None:
            self._bus._leave(self._group, self)
            self._group = None
            self._positions.clear()

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset(self._positions)

    def joined(self) -> bool:
        group = self._group
        return (
            group is not None
            and self._generation == group.generation
            and group.targets.get(self, frozenset()) <= self._positions.keys()
        )

    def position(self, tp: TopicPartition) -> int | None:
        return self._positions.get(tp)

    def high_watermark(self, tp: TopicPartition) -> int | None:
        return self._bus._log(tp).end if tp in self._positions else None

    async def getmany(self, *, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumedRecord]:
        group = self._require_group()
        deadline = time.monotonic() + timeout_ms / 1000
        if self._available() < max_records:  # a full batch is taken at once, as from a fetched backlog
            await asyncio.sleep(max(min(self._last_batch + self._gather, deadline) - time.monotonic(), 0.0))
        while True:
            await self._sync_assignment(group)
            records = self._take(max_records)
            if records:
                self._last_batch = time.monotonic()
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await self._bus._wait_change(remaining)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        group = self._require_group()
        for tp in offsets:
            if group.owners.get(tp) is not self or tp not in group.targets.get(self, ()):
                raise CommitFailed(f"{tp} is not assigned to this member of {self._group_id!r}")
        for tp, offset in offsets.items():
            group.committed[tp] = offset
            self._bus._trim(group, tp)

    def _require_group(self) -> _Group:
        if self._group is None:
            raise BusError("consumer is not started")
        return self._group

    async def _sync_assignment(self, group: _Group) -> None:
        target = group.targets.get(self, frozenset())
        if self._generation != group.generation:
            self._generation = group.generation
            revoked = frozenset(self._positions) - target
            if revoked:
                if self._listener is not None:
                    await self._listener.on_partitions_revoked(revoked)
                for tp in revoked:
                    del self._positions[tp]
                    group.owners.pop(tp, None)
                self._bus._notify()
        claimable = frozenset(
            tp for tp in target - frozenset(self._positions) if group.owners.get(tp) is None
        )
        if claimable:
            for tp in claimable:
                group.owners[tp] = self
                log = self._bus._log(tp)
                self._positions[tp] = max(group.committed.get(tp, log.base), log.base)
            if self._listener is not None:
                await self._listener.on_partitions_assigned(claimable)

    def _available(self) -> int:
        """Records waiting on the partitions this member holds."""
        return sum(self._bus._log(tp).end - position for tp, position in self._positions.items())

    def _take(self, max_records: int) -> list[ConsumedRecord]:
        taken: list[ConsumedRecord] = []
        for tp in sorted(self._positions):
            if len(taken) >= max_records:
                break
            batch = self._bus._log(tp).read(self._positions[tp], max_records - len(taken))
            if batch:
                taken.extend(batch)
                self._positions[tp] = batch[-1].offset + 1
        if taken:
            self._bus._was_read()
        return taken


class _TailConsumer(Consumer):
    def __init__(self, bus: InProcessBus, tp: TopicPartition) -> None:
        self._bus = bus
        self._tp = tp
        self._position: int | None = None

    @property
    def reading_from(self) -> int:
        """The offset it reads next (0 before it started): records below are read and may go."""
        return self._position if self._position is not None else 0

    async def start(self) -> None:
        self._position = self._bus._log(self._tp).end
        self._bus._tails.setdefault(self._tp, set()).add(self)

    async def stop(self) -> None:
        self._position = None
        tails = self._bus._tails.get(self._tp)
        if tails is not None:
            tails.discard(self)
            if not tails:
                del self._bus._tails[self._tp]

    def assignment(self) -> frozenset[TopicPartition]:
        return frozenset({self._tp}) if self._position is not None else frozenset()

    def joined(self) -> bool:
        return self._position is not None

    def position(self, tp: TopicPartition) -> int | None:
        return self._position if tp == self._tp else None

    def high_watermark(self, tp: TopicPartition) -> int | None:
        return self._bus._log(tp).end if tp == self._tp and self._position is not None else None

    async def getmany(self, *, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumedRecord]:
        if self._position is None:
            raise BusError("consumer is not started")
        log = self._bus._log(self._tp)
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            batch = log.read(self._position, max_records)
            if batch:
                self._position = batch[-1].offset + 1
                if not self._bus._is_grouped(self._tp.topic):
                    self._bus._trim_ungrouped(self._tp, log)
                return batch
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            await self._bus._wait_change(remaining)

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        raise BusError("a partition tail has no group to commit to")
