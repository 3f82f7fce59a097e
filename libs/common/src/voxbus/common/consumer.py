"""The consume → handle → commit loop every bus-consuming service runs.

The handler makes a batch's effects durable and returns the offsets that are now safe to commit;
the loop commits them. A commit refused after a rebalance is harmless: the partition's new owner
resumes from the last commit and the handlers deduplicate replays (by session seq).
"""

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from voxbus.common.bus.base import Bus, CommitFailed, ConsumedRecord, Consumer, TopicPartition

log = logging.getLogger(__name__)


class BatchHandler(Protocol):
    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        """Process records durably; the offsets to commit (next offset to read, per partition)."""
        ...

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None: ...

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None: ...


class ConsumerLoop:
    def __init__(
        self,
        bus: Bus,
        topics: Sequence[str],
        *,
        group_id: str,
        handler: BatchHandler,
        max_records: int = 500,
        commit_when_idle: bool = False,
    ) -> None:
        """`commit_when_idle`: also ask the handler (`handle([])`) when nothing arrived, for a
        handler whose effects become durable later than its batches (the echo service's)."""
        self._bus = bus
        self._topics = topics
        self._group_id = group_id
        self._handler = handler
        self._max_records = max_records
        self._commit_when_idle = commit_when_idle
        self._committed: dict[TopicPartition, int] = {}
        self._consumer: Consumer | None = None

    def assignment(self) -> frozenset[TopicPartition]:
        """The partitions this loop reads now (empty before it joined its group)."""
        return self._consumer.assignment() if self._consumer is not None else frozenset()

    async def run(self, *, until_idle: float | None = None) -> None:
        """Consume until cancelled, or (tests, benchmarks) until nothing arrives for `until_idle` s."""
        consumer = self._bus.group_consumer(self._topics, group_id=self._group_id, listener=self._handler)
        self._consumer = consumer
        async with consumer:
            idle_since = time.monotonic()
            while until_idle is None or time.monotonic() - idle_since < until_idle:
                records = await consumer.getmany(timeout_ms=200, max_records=self._max_records)
                if records:
                    idle_since = time.monotonic()
                elif not self._commit_when_idle:
                    continue
                offsets = await self._handler.handle(records)
                await self._commit(consumer, offsets)

    async def _commit(self, consumer: Consumer, offsets: Mapping[TopicPartition, int]) -> None:
        changed = {tp: offset for tp, offset in offsets.items() if self._committed.get(tp) != offset}
        if not changed:
            return
        try:
            await consumer.commit(changed)
        except CommitFailed as exc:
            log.warning("commit refused after a rebalance", extra={"reason": str(exc)})
            return
        self._committed.update(changed)
