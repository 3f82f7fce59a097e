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


async def test_a_backlog_is_taken_in_full_batches_without_waiting_for_the_window() -> None:
    bus = InProcessBus()
    await bus.create_topics({"raw": 1})
    consumer = bus.group_consumer(["raw"], group_id="transcoder", batch_ms=60_000)
    await consumer.start()
    for n in range(30):
        await bus.send("raw", message("s", b"%d" % n))
    batches = [len(await consumer.getmany(timeout_ms=60_000, max_records=10)) for _ in range(3)]
    assert batches == [10, 10, 10]  # a window would hold back a reader that is behind
    await consumer.stop()
