"""The bus contract, run against the in-process bus and real Apache Kafka alike."""

import asyncio
from collections import defaultdict

import pytest
from aiokafka.partitioner import murmur2

from tests.helpers import consume, consume_quiet, message, wait_for_assignment
from voxbus.common.bus.base import Bus, BusError, CommitFailed, TopicPartition
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.records import AudioChunk, AudioFormat, SessionStart, SessionStop, decode


class RecordingListener:
    """Keeps what a rebalance listener is told."""

    def __init__(self) -> None:
        self.assigned: list[frozenset[TopicPartition]] = []
        self.revoked: list[frozenset[TopicPartition]] = []

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        self.revoked.append(revoked)

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        self.assigned.append(assigned)


async def test_records_of_one_key_stay_in_order_on_one_partition(bus: Bus, unique: str) -> None:
    topic = f"order-{unique}"
    await bus.create_topics({topic: 6})
    keys = [f"session-{n}" for n in range(5)]
    deliveries = [await bus.send(topic, message(key, f"{n}".encode())) for n in range(40) for key in keys]
    await asyncio.gather(*deliveries)

    async with bus.group_consumer([topic], group_id=f"g-{unique}") as consumer:
        records = await consume(consumer, 200)

    by_key: dict[bytes, list[int]] = defaultdict(list)
    partitions: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        assert record.key is not None
        by_key[record.key].append(int(record.value))
        partitions[record.key].add(record.partition)
    assert {key.decode() for key in by_key} == set(keys)
    for key, values in by_key.items():
        assert values == list(range(40)), key
        assert len(partitions[key]) == 1, key


async def test_key_chooses_the_same_partition_as_kafkas_partitioner(bus: Bus, unique: str) -> None:
    topic = f"keys-{unique}"
    await bus.create_topics({topic: 12})
    for key in ("3f1c4a9e-0c7d-4b8e-9a51-2d5e6f7a8b90", "a", "session-42"):
        delivered = await bus.send_and_wait(topic, message(key, b"x"))
        assert delivered.partition == (murmur2(key.encode()) & 0x7FFFFFFF) % 12


async def test_explicit_partition_and_tail_from_end(bus: Bus, unique: str) -> None:
    topic = f"egress-{unique}"
    await bus.create_topics({topic: 4})
    await bus.send_and_wait(topic, message("before", b"old"), partition=3)

    async with bus.partition_tail(topic, 3) as tail:
        assert tail.assignment() == {TopicPartition(topic, 3)}
        for n in range(3):
            await bus.send_and_wait(topic, message(f"s{n}", f"new{n}".encode()), partition=3)
        await bus.send_and_wait(topic, message("other", b"elsewhere"), partition=2)
        records = await consume(tail, 3)
        assert [r.value for r in records] == [b"new0", b"new1", b"new2"]
        assert {r.partition for r in records} == {3}
        assert await tail.getmany(timeout_ms=500) == []
        with pytest.raises(BusError):
            await tail.commit({TopicPartition(topic, 3): records[-1].offset + 1})

    with pytest.raises(BusError):
        await bus.send_and_wait(topic, message("x", b"x"), partition=4)


async def test_session_records_and_headers_round_trip(bus: Bus, unique: str) -> None:
    topic = f"raw-{unique}"
    await bus.create_topics({topic: 3})
    sid = "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e"
    fmt = AudioFormat(codec="opus", rate=16000, channels=1)
    sent = [
        SessionStart(session_id=sid, seq=0, ts_ns=1, format=fmt, protocol="wyoming", user_id="u"),
        AudioChunk(session_id=sid, seq=1, ts_ns=2, format=fmt, audio=bytes(range(256)) * 3),
        AudioChunk(session_id=sid, seq=2, ts_ns=3, format=fmt, audio=b""),
        SessionStop(session_id=sid, seq=3, ts_ns=4, reason="client closed"),
    ]
    for record in sent:
        await bus.send_and_wait(topic, record.to_message())
    async with bus.group_consumer([topic], group_id=f"g-{unique}") as consumer:
        received = await consume(consumer, len(sent))
    assert [decode(r.key, r.value, r.headers) for r in received] == sent
    assert received[1].value == bytes(range(256)) * 3
    assert dict(received[1].headers)["codec"] == b"opus"


async def test_delivery_future_tells_where_the_record_is_durable(bus: Bus, unique: str) -> None:
    topic = f"acks-{unique}"
    await bus.create_topics({topic: 1})
    futures = [await bus.send(topic, message("k", bytes([n]))) for n in range(20)]
    offsets = [(await f).offset for f in futures]
    assert offsets == list(range(offsets[0], offsets[0] + 20))
    assert {(await f).topic for f in futures} == {topic}


async def test_commit_then_restart_resumes_without_loss_or_duplicates(bus: Bus, unique: str) -> None:
    topic, group = f"resume-{unique}", f"g-{unique}"
    await bus.create_topics({topic: 1})
    for n in range(10):
        await bus.send_and_wait(topic, message("s", f"{n}".encode()))
    tp = TopicPartition(topic, 0)

    async with bus.group_consumer([topic], group_id=group) as first:
        records = await consume(first, 10)
        assert [int(r.value) for r in records] == list(range(10))
        await first.commit({tp: records[5].offset + 1})  # effects of 0..5 are durable

    for n in range(10, 13):
        await bus.send_and_wait(topic, message("s", f"{n}".encode()))
    async with bus.group_consumer([topic], group_id=group) as restarted:
        resumed = await consume(restarted, 7)
        assert [int(r.value) for r in resumed] == list(range(6, 13))
        assert await consume_quiet(restarted, quiet=0.5) == []


async def test_two_members_split_partitions_and_a_rebalance_moves_them(bus: Bus, unique: str) -> None:
    topic, group = f"split-{unique}", f"g-{unique}"
    await bus.create_topics({topic: 4})
    every = {TopicPartition(topic, p) for p in range(4)}
    listener_a, listener_b = RecordingListener(), RecordingListener()

    a = bus.group_consumer([topic], group_id=group, listener=listener_a)
    await a.start()
    b = bus.group_consumer([topic], group_id=group, listener=listener_b)
    try:
        await wait_for_assignment(a, 4)
        assert a.assignment() == every
        await b.start()
        await asyncio.gather(wait_for_assignment(a, 2), wait_for_assignment(b, 2))
        assert a.assignment() | b.assignment() == every
        assert not a.assignment() & b.assignment()
        assert any(revoked & b.assignment() for revoked in listener_a.revoked)
        assert any(assigned == b.assignment() for assigned in listener_b.assigned)

        for n in range(40):
            await bus.send_and_wait(topic, message(f"k{n}", f"{n}".encode()), partition=n % 4)
        got_a, got_b = await asyncio.gather(consume_quiet(a), consume_quiet(b))
        assert sorted(int(r.value) for r in got_a + got_b) == list(range(40))
        assert {r.partition for r in got_a} == {tp.partition for tp in a.assignment()}
        assert {r.partition for r in got_b} == {tp.partition for tp in b.assignment()}
        await a.commit({TopicPartition(topic, r.partition): r.offset + 1 for r in got_a})
        await b.commit({TopicPartition(topic, r.partition): r.offset + 1 for r in got_b})
        taken_from_b = b.assignment()
    finally:
        await b.stop()

    try:
        await wait_for_assignment(a, 4)
        assert any(taken_from_b <= assigned for assigned in listener_a.assigned)
        await bus.send_and_wait(topic, message("late", b"40"), partition=next(iter(taken_from_b)).partition)
        late = await consume(a, 1)
        assert [r.value for r in late] == [b"40"]  # b's commits hold: nothing it consumed comes again
    finally:
        await a.stop()


async def test_a_member_cannot_commit_partitions_it_does_not_own(bus: Bus, unique: str) -> None:
    topic, group = f"own-{unique}", f"g-{unique}"
    await bus.create_topics({topic: 2})
    async with (
        bus.group_consumer([topic], group_id=group) as a,
        bus.group_consumer([topic], group_id=group) as b,
    ):
        await asyncio.gather(wait_for_assignment(a, 1), wait_for_assignment(b, 1))
        (not_mine,) = b.assignment()
        with pytest.raises(CommitFailed):
            await a.commit({not_mine: 1})


async def test_large_records_committed_past_are_let_go_and_the_group_resumes_at_its_commit(
    bus: Bus, unique: str
) -> None:
    topic, group = f"large-{unique}", f"g-{unique}"
    await bus.create_topics({topic: 1})
    tp = TopicPartition(topic, 0)
    big = 512 * 1024
    async with bus.group_consumer([topic], group_id=group) as first:
        await wait_for_assignment(first, 1)
        for n in range(12):
            await bus.send_and_wait(topic, message("s", bytes([n]) * big))
        records = await consume(first, 12)
        await first.commit({tp: records[9].offset + 1})
    if isinstance(bus, InProcessBus):  # what the process holds: the two records not committed past
        assert bus.retained_bytes() <= 3 * big

    async with bus.group_consumer([topic], group_id=group) as restarted:
        resumed = await consume(restarted, 2)
        assert [r.value[0] for r in resumed] == [10, 11]


async def test_a_tail_reads_every_large_record_sent_after_it_started(bus: Bus, unique: str) -> None:
    topic = f"tail-large-{unique}"
    await bus.create_topics({topic: 1})
    big = 512 * 1024
    async with bus.partition_tail(topic, 0) as tail:
        for n in range(6):  # 3 MiB: within what a partition keeps for a tail that lags
            await bus.send_and_wait(topic, message(f"s{n}", bytes([n]) * big), partition=0)
        records = await consume(tail, 6)
        assert [r.value[0] for r in records] == list(range(6))
        if isinstance(bus, InProcessBus):  # read by its only tail: let go
            assert bus.retained_bytes() < 512 * 1024


async def test_position_and_high_watermark_tell_a_members_lag(bus: Bus, unique: str) -> None:
    topic, group = f"lag-{unique}", f"g-{unique}"
    await bus.create_topics({topic: 2})
    tp, other = TopicPartition(topic, 0), TopicPartition(f"elsewhere-{unique}", 0)
    for n in range(3):
        await bus.send_and_wait(topic, message("s", f"{n}".encode()), partition=0)

    member = bus.group_consumer([topic], group_id=group)
    assert not member.joined()
    async with member:
        first = await consume(member, 1)
        assert member.joined()
        assert member.assignment() == {tp, TopicPartition(topic, 1)}
        assert member.position(tp) == first[-1].offset + 1 == 1
        for n in range(3, 5):
            await bus.send_and_wait(topic, message("s", f"{n}".encode()), partition=0)
        rest = await consume(member, 4)
        assert [int(r.value) for r in first + rest] == list(range(5))
        assert member.position(tp) == 5
        # Kafka learns the high watermark from its fetches: it catches up within a fetch or two
        async with asyncio.timeout(10):
            while member.high_watermark(tp) != 5:
                await member.getmany(timeout_ms=100)
        assert member.high_watermark(tp) - member.position(tp) == 0  # type: ignore[operator]
        assert member.position(other) is None
        assert member.high_watermark(other) is None
    assert not member.joined()
    assert member.position(tp) is None


async def test_a_member_of_a_group_larger_than_its_topic_joins_without_partitions(
    bus: Bus, unique: str
) -> None:
    topic, group = f"standby-{unique}", f"g-{unique}"
    await bus.create_topics({topic: 1})
    async with bus.group_consumer([topic], group_id=group) as first:
        await wait_for_assignment(first, 1)
        async with bus.group_consumer([topic], group_id=group) as second:
            async with asyncio.timeout(30):
                while not (first.joined() and second.joined()):
                    await asyncio.gather(first.getmany(timeout_ms=100), second.getmany(timeout_ms=100))
            assert len(first.assignment()) + len(second.assignment()) == 1


async def test_a_record_as_large_as_a_client_message_round_trips(bus: Bus, unique: str) -> None:
    # MAX_MESSAGE_SIZE_BYTES' default: a client's 1 MiB chunk is one record, plus key and headers
    topic, group = f"full-{unique}", f"g-{unique}"
    await bus.create_topics({topic: 1})
    value = bytes(range(256)) * 4096
    async with bus.group_consumer([topic], group_id=group) as member:
        await wait_for_assignment(member, 1)
        await bus.send_and_wait(topic, message("s" * 36, value, t="chunk", seq="4294967297"))
        (record,) = await consume(member, 1)
    assert record.value == value
    limit = await bus.record_limit(topic)  # what a caller may send there: at least this much
    assert limit is None or limit >= len(value)
