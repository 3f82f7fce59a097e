"""A rebalance while a batch is handled, over real Kafka: aiokafka tells the rebalance listener
from its coordinator's task, whatever the consumer loop is doing. A handler told its partitions
are revoked in the middle of a batch (the transcoder drops its sessions' state) went on with
that batch on state that was gone: a stop record it had read was never forwarded, and its
session stayed `closing` for good. The loop now lets a revocation in only between batches,
after the batch in hand is handled and committed."""

import asyncio
from collections.abc import Mapping

from tests.helpers import message, wait_for_assignment
from voxbus.common.bus.base import ConsumedRecord, TopicPartition
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
