"""A rebalance while a batch is handled, over real Kafka: aiokafka tells the rebalance listener
from its coordinator's task, whatever the consumer loop is doing. A handler told its partitions
are revoked in the middle of a batch (the transcoder drops its sessions' state) went on with
that batch on state that was gone: a stop record it had read was never forwarded, and its
session stayed `closing` for good. The loop now lets a revocation in only between batches,
after the batch in hand is handled and committed."""

import asyncio
from collections.abc import Mapping

from tests.helpers import message, wait_for_assignment
from voxbus.common.bus.base import ConsumedRecord, Consumer, TopicPartition
from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.consumer import ConsumerLoop
from voxbus.devinfra import KafkaEndpoint


class SlowHandler:
    """Holds its first batch until told; records what happened, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.in_batch, self.go = asyncio.Event(), asyncio.Event()

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        if not records:
            return {}
        self.events.append("batch begins")
        self.in_batch.set()
        await self.go.wait()
        self.events.append("batch ends")
        return {record.tp: record.offset + 1 for record in records}

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        if revoked:
            self.events.append("revoked")

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None


async def test_a_rebalance_waits_for_the_batch_in_hand(kafka_endpoint: KafkaEndpoint, unique: str) -> None:
    topic, group = f"rebalance-{unique}", f"g-{unique}"
    async with KafkaBus(kafka_endpoint.bootstrap_servers) as bus:
        await bus.create_topics({topic: 2})
        handler = SlowHandler()
        loop = ConsumerLoop(bus, [topic], group_id=group, handler=handler)
        running = asyncio.create_task(loop.run())
        try:
            for partition in range(2):
                await bus.send_and_wait(topic, message("k", b"x"), partition=partition)
            await asyncio.wait_for(handler.in_batch.wait(), 60)
            # a second member joins: the group rebalances while the first batch is in hand
            async with bus.group_consumer([topic], group_id=group) as second:
                joining = asyncio.create_task(wait_for_assignment(second, 1, timeout=60))
                await asyncio.wait_for(loop.rebalance_waiting.wait(), 60)
                handler.go.set()
                await joining
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    assert handler.events[:3] == ["batch begins", "batch ends", "revoked"]


class RecordingHandler:
    """Takes every record; `handled` is set once `expected` records were."""

    def __init__(self, expected: int) -> None:
        self.values: list[bytes] = []
        self.expected, self.handled = expected, asyncio.Event()
        self._more = asyncio.Event()  # set (and replaced) whenever records were taken

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        self.values += [record.value for record in records]
        if len(self.values) >= self.expected:
            self.handled.set()
        if records:
            self._more.set()
            self._more = asyncio.Event()
        return {record.tp: record.offset + 1 for record in records}

    async def took(self, value: bytes) -> None:
        """Until a record of this value was taken."""
        while value not in self.values:
            await self._more.wait()

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None


async def _read_until_markers(consumer: Consumer, markers: set[bytes]) -> list[bytes]:
    """What `consumer` reads (driving its group membership) until it read each of `markers`."""
    read: list[bytes] = []
    async with asyncio.timeout(60):
        while not markers <= set(read):
            read += [record.value for record in await consumer.getmany(timeout_ms=100)]
    return read


async def test_a_loop_that_commits_seldom_commits_what_it_handled_when_it_gives_partitions_up(
    kafka_endpoint: KafkaEndpoint, unique: str
) -> None:
    # the echo service commits every 250 ms, not every batch: whoever takes its partitions, at a
    # rebalance or after it stopped, starts after what it handled, not up to 250 ms before
    topic, group = f"seldom-{unique}", f"g-{unique}"
    async with KafkaBus(kafka_endpoint.bootstrap_servers) as bus:
        await bus.create_topics({topic: 2})
        handler = RecordingHandler(expected=6)
        never = ConsumerLoop(
            bus, [topic], group_id=group, handler=handler, commit_interval=3600, commit_when_idle=True
        )
        running = asyncio.create_task(never.run())
        try:
            for partition in range(2):
                for n in range(3):
                    await bus.send_and_wait(topic, message("k", f"old {n}".encode()), partition=partition)
            await asyncio.wait_for(handler.handled.wait(), 60)
            async with bus.group_consumer([topic], group_id=group) as second:
                async with asyncio.timeout(60):
                    while len(second.assignment()) != 1:  # what it reads meanwhile is kept below
                        joined = await second.getmany(timeout_ms=100)
                        assert not joined, [record.value for record in joined]
                for partition in range(2):
                    await bus.send_and_wait(
                        topic, message("k", f"new {partition}".encode()), partition=partition
                    )
                (taken,) = second.assignment()
                marker = f"new {taken.partition}".encode()
                assert await _read_until_markers(second, {marker}) == [marker]
                async with asyncio.timeout(60):  # the first loop handled its own partition's record
                    await handler.took(f"new {1 - taken.partition}".encode())
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        # stopped: the partition it kept was committed up to what it handled ("new" included)
        async with bus.group_consumer([topic], group_id=group) as third:
            kept = 1 - taken.partition
            await bus.send_and_wait(topic, message("k", b"last"), partition=kept)
            read = await _read_until_markers(third, {b"last"})
    assert [value for value in read if value != f"new {taken.partition}".encode()] == [b"last"]
