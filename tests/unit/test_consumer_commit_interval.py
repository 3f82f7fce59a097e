"""A consumer loop's commit interval applies only where a commit is a broker request.

Over Kafka (tests/integration/test_consumer_rebalance.py) the echo service commits every 250 ms;
in process, a commit is what frees the records every group has read, so the same loop commits
after every batch there and the bus holds no more than it did.
"""

import asyncio
from collections.abc import Mapping

from tests.helpers import message
from voxbus.common.bus.base import ConsumedRecord, TopicPartition
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.consumer import ConsumerLoop

RECORD = bytes(100_000)  # ten of them pass the bytes the bus frees at once


class HeldWhenHandling:
    """Notes how many bytes the bus holds as each batch is handled; `second` is set at the second."""

    def __init__(self, bus: InProcessBus) -> None:
        self.bus, self.held = bus, list[int]()
        self.first, self.second = asyncio.Event(), asyncio.Event()

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        if records:
            self.held.append(self.bus.retained_bytes())
            (self.second if self.first.is_set() else self.first).set()
        return {record.tp: record.offset + 1 for record in records}

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None


async def test_in_process_a_seldom_committing_loop_still_frees_each_batch_once_handled() -> None:
    bus = InProcessBus()
    await bus.create_topics({"audio": 1})
    handler = HeldWhenHandling(bus)
    frozen = ConsumerLoop(
        bus,
        ["audio"],
        group_id="echo",
        handler=handler,
        commit_interval=3600,
        commit_when_idle=True,
        clock=lambda: 0.0,
    )
    for _ in range(10):
        await bus.send("audio", message("s", RECORD))
    running = asyncio.create_task(frozen.run())
    try:
        await asyncio.wait_for(handler.first.wait(), 10)
        await bus.send("audio", message("s", RECORD))
        await asyncio.wait_for(handler.second.wait(), 10)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    first, second = handler.held
    assert first >= 10 * len(RECORD)
    assert second < 2 * len(RECORD)  # the first batch was committed, and freed, before the second
