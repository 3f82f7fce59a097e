"""In process, a group consumer made with `batch_ms` takes what arrives within that window as one
batch, as a Kafka fetch held to fill does: the writer's fsyncs and store writes are paid per batch,
so `voxbus up` pays them once per window rather than once per chunk."""

import asyncio

from tests.helpers import message
from voxbus.common.bus.memory import InProcessBus

WINDOW_MS = 500  # what arrives a few microseconds apart must fall in one window


async def test_records_arriving_one_by_one_within_the_window_come_as_one_batch() -> None:
    bus = InProcessBus()
    await bus.create_topics({"pcm": 1})
    consumer = bus.group_consumer(["pcm"], group_id="writer", batch_ms=WINDOW_MS)
    await consumer.start()
    await bus.send("pcm", message("s", b"first"))
    assert [r.value for r in await consumer.getmany(timeout_ms=5000)] == [b"first"]  # after quiet: at once
    next_batch = asyncio.create_task(consumer.getmany(timeout_ms=5000))
    for n in range(5):
        await bus.send("pcm", message("s", b"%d" % n))
        await asyncio.sleep(0)  # the consumer sees each record arrive
    assert [r.value for r in await next_batch] == [b"0", b"1", b"2", b"3", b"4"]
    await consumer.stop()
