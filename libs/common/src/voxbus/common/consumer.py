"""The consume → handle → commit loop every bus-consuming service runs.

The handler makes a batch's effects durable and returns the offsets that are now safe to commit;
the loop commits them. A commit refused after a rebalance is harmless: the partition's new owner
resumes from the last commit and the handlers deduplicate replays (by session seq).

A rebalance comes between batches: aiokafka tells the rebalance listener from its coordinator's
task, whatever the loop is doing, so the loop hands the handler a revocation only once the batch
in hand is handled and committed (a handler that dropped a partition's state in the middle of a
batch went on with the batch on state that was gone).

A loop that crashes gives its partitions up (the handler is told they are revoked); the runtime
starts a new loop, which resumes from the last commit. `ready` is the service's `/ready` check:
ready means consuming.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from voxbus.common.bus.base import (
    Bus,
    BusError,
    CommitFailed,
    ConsumedRecord,
    Consumer,
    RebalanceListener,
    TopicPartition,
)

log = logging.getLogger(__name__)


class BatchHandler(Protocol):
    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        """Process records durably; the offsets to commit (next offset to read, per partition)."""
        ...

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None: ...


_LAG_LABELS = ("group", "topic", "partition")
_POLL_MS = 200  # a poll's wait when nothing arrives (the loop checks its idle and stop conditions)
_LAST_COMMIT_SECONDS = 5.0  # how long a stopping loop tries to commit what it holds


class ConsumerLag(Collector):
    """The gauge `{name}{group,topic,partition}`: high watermark - position of every partition
    the service's live consumers read, computed when scraped (so it is current even while a
    consumer is busy, and costs the loop nothing)."""

    def __init__(self, name: str, documentation: str) -> None:
        self._name = name
        self._documentation = documentation
        self._consumers: list[tuple[str, Consumer]] = []
        REGISTRY.register(self)

    def track(self, group_id: str, consumer: Consumer) -> None:
        self._consumers.append((group_id, consumer))

    def forget(self, consumer: Consumer) -> None:
        self._consumers = [(g, c) for g, c in self._consumers if c is not consumer]

    def lags(self) -> dict[tuple[str, TopicPartition], int]:
        """Lag per group and partition (summed over consumers; only tests run several apps per
        process)."""
        lags: dict[tuple[str, TopicPartition], int] = {}
        for group_id, consumer in self._consumers:
            for tp in consumer.assignment():
                high, position = consumer.high_watermark(tp), consumer.position(tp)
                if high is not None and position is not None:
                    lags[group_id, tp] = lags.get((group_id, tp), 0) + max(0, high - position)
        return lags

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self._name, self._documentation, labels=_LAG_LABELS)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=_LAG_LABELS)
        for (group_id, tp), lag in sorted(self.lags().items()):
            family.add_metric((group_id, tp.topic, str(tp.partition)), lag)
        yield family


class ConsumerLoop:
    def __init__(
        self,
        bus: Bus,
        topics: Sequence[str],
        *,
        group_id: str,
        handler: BatchHandler,
        max_records: int = 500,
        batch_ms: int = 0,
        commit_when_idle: bool = False,
        commit_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        lag: ConsumerLag | None = None,
        on_progress: Callable[[], None] | None = None,
        on_exit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """`batch_ms`: the consumer's batching window (`Bus.group_consumer`). `commit_when_idle`:
        also ask the handler (`handle([])`) when nothing arrived, for a handler whose effects
        become durable later than its batches (the echo service's). `commit_interval`: on a bus
        whose commits are broker requests (`Bus.commit_is_a_request`), commit at most this often
        (seconds; `clock` tells the time): what was handled in between is committed with the next
        commit, before partitions are given up, and when the loop stops. For a handler whose
        replays are harmless, committing every batch costs more than the batches (the echo
        service's, at 50 small batches a second). 0, or an in-process bus: after every batch.
        `lag`: where this loop's consumer lag is reported. `on_progress`: called after every
        non-empty batch the handler completed (the runtime's restart bookkeeping). `on_exit`:
        awaited once the run ended, however (the writer closes its files)."""
        self._bus = bus
        self._topics = topics
        self._group_id = group_id
        self._handler = handler
        self._max_records = max_records
        self._batch_ms = batch_ms
        self._commit_when_idle = commit_when_idle
        if commit_interval and not commit_when_idle:
            raise ValueError(
                "a commit interval needs commit_when_idle: held offsets are committed when idle too"
            )
        self._commit_interval = commit_interval if bus.commit_is_a_request else 0.0
        # a poll lasts at least the batching window: a fetch held to fill is not cut short
        self._poll_ms = max(_POLL_MS, batch_ms)
        self._clock = clock
        self._uncommitted: dict[TopicPartition, int] = {}  # handled, not committed yet
        self._last_commit = clock()
        self._lag = lag
        self._on_progress = on_progress
        self._on_exit = on_exit
        self._committed: dict[TopicPartition, int] = {}
        self._consumer: Consumer | None = None
        self._batch = asyncio.Lock()  # held from a batch's handling to its commit
        self.rebalance_waiting = asyncio.Event()  # a revocation waits for the batch in hand

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this loop reads now (empty before it joined its group)."""
        return self._consumer.assignment() if self._consumer is not None else frozenset()

    async def ready(self) -> None:
        """A `/ready` check: pass once the loop's consumer joined its group and can read its
        partitions (a member left without partitions, in a group with more members than
        partitions, is ready: it is a standby); raise with the reason otherwise."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError(f"not consuming: no member of group {self._group_id!r} is running")
        if not consumer.joined():
            raise RuntimeError(f"not consuming yet: joining group {self._group_id!r}")

    async def run(self, *, until_idle: float | None = None) -> None:
        """Consume until cancelled, or (tests, benchmarks) until nothing arrives for `until_idle` s
        after the last batch was handled (however long handling it took)."""
        try:
            await self._run(until_idle)
        finally:
            if self._on_exit is not None:
                await self._on_exit()

    async def _run(self, until_idle: float | None) -> None:
        consumer = self._bus.group_consumer(
            self._topics, group_id=self._group_id, listener=_BetweenBatches(self), batch_ms=self._batch_ms
        )
        async with consumer:
            self._consumer = consumer
            if self._lag is not None:
                self._lag.track(self._group_id, consumer)
            try:
                await self._consume(consumer, until_idle)
            except Exception:
                # the next loop resumes from the last commit: the handler must let go of what it holds
                await self._handler.on_partitions_revoked(consumer.assignment())
                raise
            finally:
                await self._commit_on_the_way_out(consumer)
                self._consumer = None
                if self._lag is not None:
                    self._lag.forget(consumer)

    async def _consume(self, consumer: Consumer, until_idle: float | None) -> None:
        idle_since = time.monotonic()
        while until_idle is None or time.monotonic() - idle_since < until_idle:
            records = await consumer.getmany(timeout_ms=self._poll_ms, max_records=self._max_records)
            if not records and not self._commit_when_idle:
                continue
            async with self._batch:
                self._uncommitted.update(await self._handler.handle(records))
                if self._clock() - self._last_commit >= self._commit_interval:
                    await self._commit(consumer, self._uncommitted)
            if records:
                idle_since = time.monotonic()
                if self._on_progress is not None:
                    self._on_progress()

    async def _commit(self, consumer: Consumer, offsets: Mapping[TopicPartition, int]) -> None:
        self._last_commit = self._clock()
        offsets = dict(offsets)  # a snapshot: it may be what is uncommitted
        changed = {tp: offset for tp, offset in offsets.items() if self._committed.get(tp) != offset}
        if changed:
            try:
                await consumer.commit(changed)
            except CommitFailed as exc:
                log.warning("commit refused after a rebalance", extra={"reason": str(exc)})
                return
            self._committed.update(changed)
        for tp, offset in offsets.items():  # held offsets are let go once committed, unless they moved on
            if self._uncommitted.get(tp) == offset:
                del self._uncommitted[tp]

    async def _commit_on_the_way_out(self, consumer: Consumer) -> None:
        """The loop ends (stopped, or failed): commit what it handled and holds, if the bus lets it
        within a few seconds; a bus that is gone must not keep the loop from ending."""
        if not self._uncommitted:
            return
        try:
            async with asyncio.timeout(_LAST_COMMIT_SECONDS):
                await self._commit_held(consumer, list(self._uncommitted))
        except (BusError, TimeoutError) as exc:
            log.warning(
                "could not commit what was handled before stopping: the next owner handles it again",
                extra={"reason": repr(exc)},
            )

    async def _commit_held(self, consumer: Consumer, partitions: Iterable[TopicPartition]) -> None:
        """Commit what was handled and not committed yet on `partitions` (given up, or the loop
        stopping)."""
        held = {tp: self._uncommitted[tp] for tp in partitions if tp in self._uncommitted}
        if held:
            await self._commit(consumer, held)


class _BetweenBatches(RebalanceListener):
    """The handler, as the consumer's rebalance listener, told only between batches."""

    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        loop = self._loop
        if loop._batch.locked():
            loop.rebalance_waiting.set()
        async with loop._batch:
            loop.rebalance_waiting.clear()
            try:
                if loop._consumer is not None:  # the next owner starts after what was handled here
                    await loop._commit_held(loop._consumer, revoked)
            except BusError as exc:
                log.warning(
                    "could not commit a revoked partition's handled records", extra={"reason": repr(exc)}
                )
            finally:
                await loop._handler.on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        async with self._loop._batch:
            await self._loop._handler.on_partitions_assigned(assigned)
