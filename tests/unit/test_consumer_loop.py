"""The consume → handle → commit loop: with a commit interval it commits at most that often,
and what the interval held back is committed when the loop ends."""

import asyncio
from collections.abc import Mapping

from voxbus.common.bus.base import ConsumedRecord, TopicPartition
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.records import BusMessage

TP = TopicPartition("raw", 0)


class _Handler:
    def __init__(self) -> None:
        self.seen = 0
        self.all_seen = asyncio.Event()

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        self.seen += len(records)
        if self.seen == 20:
            self.all_seen.set()
        return {TP: records[-1].offset + 1} if records else {}

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None


async def test_commits_at_most_once_per_interval_and_what_it_held_back_at_the_end() -> None:
    bus = InProcessBus()
    await bus.create_topics({"raw": 1})
    handler = _Handler()
    loop = ConsumerLoop(bus, ["raw"], group_id="g", handler=handler, max_records=1, commit_interval=60.0)
    running = asyncio.create_task(loop.run(until_idle=0.3))
    for n in range(20):
        await bus.send("raw", BusMessage(key=b"s", value=bytes([n]), headers=()), partition=0)
        await asyncio.sleep(0.002)
    async with asyncio.timeout(5):
        await handler.all_seen.wait()
    assert loop.committed().get(TP, 0) < 20  # one batch at a time, but one commit per minute
    await running
    assert loop.committed()[TP] == 20  # the end commits what the interval held back
