"""The echo handler against the in-process bus and store: timing against the ingest time, order,
the backlog cap, sessions met mid-stream, gone sessions, missing routes and the commit point."""

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY

from tests.helpers import ManualClock, consume, consume_quiet, eventually
from voxbus.common.bus.base import ConsumedRecord, Consumer, TopicPartition
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Key
from voxbus.common.records import AudioChunk, AudioFormat, EchoSettings, SessionStart, SessionStop
from voxbus.common.store.memory import InProcessStore
from voxbus.common.timer import DueQueue
from voxbus.echo.worker import EchoHandler

RAW = TopicPartition("raw", 0)
PCM8K = AudioFormat(codec="pcm_s16le", rate=8000, channels=1)
SID = "6f1c2d1e-8f5a-4d7e-9a0b-3c4d5e6f7a8b"


T0 = 1000.0  # the handler's wall clock at the start; it and the offsets below are exact in binary
T0_NS = 1_000_000_000_000


@dataclass
class Echo:
    handler: EchoHandler
    store: InProcessStore
    egress: Consumer
    clock: ManualClock
    offset: int = 0

    async def feed(self, *records: AudioChunk | SessionStart | SessionStop) -> dict[TopicPartition, int]:
        consumed = []
        for record in records:
            message = record.to_message()
            consumed.append(
                ConsumedRecord(
                    topic=RAW.topic,
                    partition=RAW.partition,
                    offset=self.offset,
                    key=message.key,
                    value=message.value,
                    headers=message.headers,
                    timestamp_ms=0,
                )
            )
            self.offset += 1
        return dict(await self.handler.handle(consumed))


@pytest.fixture
async def echo() -> AsyncIterator[Echo]:
    bus, store = InProcessBus(), InProcessStore()
    await bus.create_topics({"raw": 1, "egress": 2})
    await store.set(Key.ROUTE + SID, "ingest-a 1")
    clock = ManualClock(T0)
    handler = EchoHandler(
        bus, store, egress_topic="egress", max_pending_bytes=1 << 20, route_ttl=0.0, clock=clock
    )
    egress = bus.partition_tail("egress", 1)
    await egress.start()
    sender = asyncio.create_task(handler.run_sender())
    try:
        yield Echo(handler, store, egress, clock)
    finally:
        sender.cancel()
        await egress.stop()


def start(delay_ms: int, *, enabled: bool = True) -> SessionStart:
    echo = EchoSettings(enabled=enabled, delay_ms=delay_ms)
    return SessionStart(session_id=SID, seq=1, ts_ns=T0_NS, format=PCM8K, protocol="t", echo=echo)


def chunk(n: int, audio: bytes, ts_ns: int = T0_NS) -> AudioChunk:
    """Ingested at `ts_ns` (by default T0, the handler clock's start)."""
    return AudioChunk(session_id=SID, seq=1 + n, ts_ns=ts_ns, format=PCM8K, audio=audio)


def dropped(reason: str) -> float:
    return REGISTRY.get_sample_value("voxbus_echo_dropped_frames_total", {"reason": reason}) or 0.0


async def test_due_at_ingest_time_plus_delay_not_at_consume_time(echo: Echo) -> None:
    ingested = T0_NS - 150_000_000  # the record spent 150 ms on its way here
    await echo.feed(start(400), chunk(1, b"\x01\x00" * 80, ingested))
    # due at ingest + 400 ms = T0 + 0.25 s, not consume (T0) + 400 ms: held while the clock is short
    echo.clock.now = T0 + 0.125
    assert await consume_quiet(echo.egress, quiet=0.3) == []
    echo.clock.now = T0 + 0.25
    record = (await consume(echo.egress, 1))[0]
    assert record.value == b"\x01\x00" * 80
    assert dict(record.headers)["seq"] == b"2"
    assert dict(record.headers)["due"] == b"%d" % (T0_NS + 250_000_000)


async def test_order_holds_when_a_resumed_pods_clock_is_behind(echo: Echo) -> None:
    await echo.feed(start(100), chunk(1, b"a" * 160), chunk(2, b"b" * 160, T0_NS - 50_000_000))
    echo.clock.now = T0 + 0.125
    assert [r.value for r in await consume(echo.egress, 2)] == [b"a" * 160, b"b" * 160]


async def test_a_backlog_over_its_cap_drops_the_oldest_and_counts_them(echo: Echo) -> None:
    before = dropped("overflow")
    # 1000 ms delay at 8 kHz mono: the cap is (1 s + 1 s) of audio = 32000 bytes = 20 chunks of 1600
    chunks = [chunk(n, bytes([n]) * 1600) for n in range(30)]
    await echo.feed(start(1000), *chunks)
    assert dropped("overflow") - before == 10
    echo.clock.now = T0 + 1.0
    echoed = await consume(echo.egress, 20)
    assert [r.value for r in echoed] == [c.audio for c in chunks[10:]]


async def test_a_session_met_mid_stream_takes_its_settings_from_the_store(echo: Echo) -> None:
    fields = {"status": "active", "echo": 1, "delay_ms": 200, "sample_rate": 8000, "channels": 1}
    await echo.store.hset(Key.SESSION + SID, fields)
    await echo.feed(chunk(7, b"\x07" * 320))
    echo.clock.now = T0 + 0.125
    assert await consume_quiet(echo.egress, quiet=0.3) == []  # 200 ms after ingest, from the store
    echo.clock.now = T0 + 0.25
    record = (await consume(echo.egress, 1))[0]
    assert record.value == b"\x07" * 320
    assert dict(record.headers)["due"] == b"%d" % (T0_NS + 200_000_000)


async def test_chunks_of_a_gone_session_are_dropped_and_counted(echo: Echo) -> None:
    before = dropped("gone")
    await echo.store.hset(Key.SESSION + SID, {"status": "completed", "echo": 1})
    await echo.feed(chunk(1, b"x" * 10), chunk(2, b"y" * 10))
    assert dropped("gone") - before == 2
    assert await consume_quiet(echo.egress, quiet=0.3) == []


async def test_no_echo_asked_no_audio_and_nothing_counted(echo: Echo) -> None:
    before = dropped("gone") + dropped("no_route")
    await echo.feed(start(0, enabled=False), chunk(1, b"x" * 10))
    assert await consume_quiet(echo.egress, quiet=0.3) == []
    assert dropped("gone") + dropped("no_route") == before


async def test_without_a_socket_the_echo_is_dropped_and_counted(echo: Echo) -> None:
    before = dropped("no_route")
    await echo.store.delete_if_equal(Key.ROUTE + SID, "ingest-a 1")
    await echo.feed(start(0), chunk(1, b"x" * 10))

    async def dropped_one() -> bool:
        return dropped("no_route") - before == 1

    await eventually(dropped_one, what="the echo without a route dropped and counted")
    assert await consume_quiet(echo.egress, quiet=0.1) == []  # nor to the partition it used to have


async def test_the_commit_waits_for_the_oldest_unsent_echo(echo: Echo) -> None:
    offsets = await echo.feed(start(300), chunk(1, b"x" * 10))
    assert offsets == {RAW: 1}  # the start is done, the chunk (offset 1) is not sent yet
    echo.clock.now = T0 + 0.375
    await consume(echo.egress, 1)

    async def committable() -> bool:  # the send's delivery callback moves the commit point
        return await echo.handler.handle([]) == {RAW: 2}

    await eventually(committable, what="the commit point past the echo sent")
    assert await echo.feed(SessionStop(session_id=SID, seq=9, ts_ns=time.time_ns(), reason="x")) == {RAW: 3}


async def test_due_queue_hands_items_over_in_due_order() -> None:
    queue: DueQueue[str] = DueQueue()
    now = time.time()
    got: list[str] = []
    done = asyncio.Event()

    async def on_due(items: list[tuple[float, str]]) -> None:
        got.extend(item for _, item in items)
        if len(got) == 4:
            done.set()

    runner = asyncio.create_task(queue.run(on_due))
    queue.push(now + 0.2, "late")
    queue.push(now + 0.1, "soon")
    queue.push(now - 1, "overdue")
    queue.push(now + 0.1, "soon, pushed after")
    async with asyncio.timeout(2):
        await done.wait()
    runner.cancel()
    assert got == ["overdue", "soon", "soon, pushed after", "late"]
