"""The in-process bus is bounded in bytes: a tail that lags keeps at most the newest few MB of
its partition, what its tails have read is let go, and a topic nobody reads keeps its newest few MB."""

import asyncio

from tests.helpers import consume, message
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.records import BusMessage

MIB = 1 << 20


async def test_a_lagging_tail_gets_the_newest_records_within_the_byte_bound() -> None:
    async with InProcessBus(retain_ungrouped_bytes=4 * MIB) as bus:
        await bus.create_topics({"egress": 1})
        async with bus.partition_tail("egress", 0) as tail:
            for n in range(20):
                await bus.send_and_wait("egress", message(f"s{n}", bytes([n]) * MIB), partition=0)
            assert bus.retained_bytes() <= 5 * MIB  # not 20 MiB: 4 MiB kept, trimmed in 256 KiB steps
            newest = await tail.getmany(timeout_ms=100, max_records=100)
            values = [r.value[0] for r in newest]
            assert values == list(range(values[0], 20)) and len(values) >= 3  # 1 MiB + key each
            assert bus.retained_bytes() < MIB


async def test_a_topic_with_no_reader_keeps_only_its_newest_megabytes() -> None:
    async with InProcessBus(retain_ungrouped_bytes=4 * MIB) as bus:
        await bus.create_topics({"egress": 2})
        for n in range(30):
            await bus.send_and_wait("egress", message("s", bytes(MIB)), partition=n % 2)
        assert bus.retained_bytes() <= 2 * 4 * MIB

        async with bus.partition_tail("egress", 1) as tail:  # a tail starts at the end, as before
            await bus.send_and_wait("egress", message("s", b"new"), partition=1)
            assert [r.value for r in await consume(tail, 1)] == [b"new"]


async def test_a_producer_waits_while_the_slowest_running_reader_is_max_unread_bytes_behind() -> None:
    # the writer falls behind while clients upload faster: the backlog would be memory here, so
    # producers wait for the reader instead (4 clients flooding once took voxbus up to 2 GB)
    async with InProcessBus(max_unread_bytes=4 * MIB) as bus:
        await bus.create_topics({"t": 1})
        async with bus.group_consumer(["t"], group_id="slow") as reader:
            while not reader.assignment():
                await reader.getmany(timeout_ms=10)
            for n in range(4):
                await bus.send_and_wait("t", BusMessage(key=b"k", value=bytes([n]) * MIB, headers=()))
            blocked = asyncio.create_task(
                bus.send_and_wait("t", BusMessage(key=b"k", value=b"5", headers=()))
            )
            await asyncio.sleep(0)  # one loop turn, not a wait: the producer runs until it must wait
            assert not blocked.done()  # 4 MiB unread: the producer waits
            first = await reader.getmany(timeout_ms=100, max_records=1)
            async with asyncio.timeout(1):
                await blocked  # one read: room again
            assert [r.value[0] for r in first] == [0]
        # a group with no running member (its service restarting) holds nobody up
        for n in range(8):
            await bus.send_and_wait("t", BusMessage(key=b"k", value=bytes([n]) * MIB, headers=()))
