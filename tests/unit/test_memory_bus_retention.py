"""The in-process bus is bounded in bytes: a tail that lags keeps at most the newest few MB of
its partition, what its tails have read is let go, and a topic nobody reads keeps its newest few MB."""

from tests.helpers import consume, message
from voxbus.common.bus.memory import InProcessBus

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
