"""Egress records with a due time (echoes sent ahead) wait in ingest until then, in order."""

import asyncio

from prometheus_client import REGISTRY

from tests.helpers import ManualClock
from voxbus.common.bus.base import BusMessage
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Header, Key
from voxbus.common.records import EgressAudio
from voxbus.common.store.memory import InProcessStore
from voxbus.ingest.egress import EgressRouter
from voxbus.ingest.leases import LeaseKeeper

SID = "6f1c2d1e-8f5a-4d7e-9a0b-3c4d5e6f7a8b"
OTHER = "0b7e3c52-7d0f-4a5e-9f3e-1c2d3e4f5a6b"
T0 = 1000.0  # the router's wall clock at the start; it and every offset below are exact in binary


def _echo(audio: bytes, seq: int | None, due: float | None, session_id: str = SID) -> BusMessage:
    headers = [(Header.TYPE, b"chunk")]
    if seq is not None:
        headers.append((Header.SEQ, str(seq).encode()))
    if due is not None:
        headers.append((Header.DUE, str(int(due * 1e9)).encode()))
    return BusMessage(key=session_id.encode(), value=audio, headers=tuple(headers))


def _lateness(sample: str) -> float:
    return REGISTRY.get_sample_value(f"voxbus_ingest_egress_lateness_seconds_{sample}") or 0.0


async def test_echoes_are_written_when_due_and_in_the_order_they_came() -> None:
    clock = ManualClock(T0)
    bus, store = InProcessBus(), InProcessStore()
    await bus.create_topics({"egress": 1})
    leases = LeaseKeeper(store, lease_ms=5000)
    router = EgressRouter(bus, store, leases, topic="egress", partitions=1, pod="pod-a", clock=clock)
    await router.start()
    written: list[tuple[bytes, float]] = []  # what the socket got, and the router's clock then
    wrote, read_all = asyncio.Event(), asyncio.Event()

    async def sink(egress: EgressAudio) -> None:
        written.append((egress.audio, clock()))
        wrote.set()

    async def marker(_: EgressAudio) -> None:
        read_all.set()

    async def until_written(count: int) -> None:
        async with asyncio.timeout(3):
            while len(written) < count:
                wrote.clear()
                await wrote.wait()

    measured_before = _lateness("count"), _lateness("sum")
    batch = store.batch()
    router.attach(batch, SID, sink)
    router.attach(batch, OTHER, marker)
    await batch.execute()
    for record in [
        _echo(b"late", 1, T0 - 1.0),  # overdue: at once
        _echo(b"first", 2, T0 + 0.25),
        _echo(b"second", 3, T0 + 0.25),
        _echo(b"overdue-but-behind", 4, T0 - 0.5),
        _echo(b"first", 2, T0 + 0.375),  # sent again: seq seen
        _echo(b"prompt", 5, None),
        _echo(b"marker", None, None, OTHER),  # another session's, read after all of the above
    ]:
        await bus.send("egress", record, partition=0)
    tasks = [asyncio.create_task(router.run(0.1)), asyncio.create_task(router.run_held())]
    try:
        async with asyncio.timeout(3):
            await read_all.wait()
        assert written == [(b"late", T0)]  # the rest is held, though read at T0
        clock.now = T0 + 0.25
        await until_written(4)
        clock.now = T0 + 0.375
        await until_written(5)
    except TimeoutError:
        raise AssertionError(f"written: {written}") from None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await router.stop()
    # held until due, not sent on arrival; the repeat (due before the prompt) was dropped
    assert written == [
        (b"late", T0),
        (b"first", T0 + 0.25),
        (b"second", T0 + 0.25),
        (b"overdue-but-behind", T0 + 0.25),
        (b"prompt", T0 + 0.375),
    ]
    # lateness is measured for what had a due time (the prompt had none): 1 + 0 + 0 + 0.75 s
    assert (_lateness("count"), _lateness("sum")) == (measured_before[0] + 4, measured_before[1] + 1.75)


class _Socket:
    """Attaches its bound method as the sink, as a connection does."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def deliver(self, egress: EgressAudio) -> None:
        self.received.append(egress.audio)


async def test_a_released_socket_leaves_no_route_and_a_resumed_one_keeps_its_own() -> None:
    store = InProcessStore()
    bus = InProcessBus()
    await bus.create_topics({"egress": 2})
    leases = LeaseKeeper(store, lease_ms=5000)
    router = EgressRouter(bus, store, leases, topic="egress", partitions=2, pod="pod-a")
    await router.start()
    first, second, other = _Socket(), _Socket(), OTHER
    route = f"pod-a {router.partition}"
    try:
        batch = store.batch()
        router.attach(batch, SID, first.deliver)
        router.attach(batch, other, _Socket().deliver)
        await batch.execute()
        assert await store.get(Key.ROUTE + SID) == route

        batch = store.batch()
        router.detach(batch, SID, first.deliver)  # a fresh bound method, as `release` passes it
        await batch.execute()
        await leases.renew_all()
        assert await store.get(Key.ROUTE + SID) is None  # released, and not renewed back
        assert await store.get(Key.ROUTE + other) == route  # another session's route stays

        # a resume on this pod attaches a new socket before the old one is released
        batch = store.batch()
        router.attach(batch, SID, second.deliver)
        router.detach(batch, SID, first.deliver)
        await batch.execute()
        await leases.renew_all()
        assert await store.get(Key.ROUTE + SID) == route
    finally:
        await router.stop()


async def test_a_paced_socket_gets_its_echoes_its_lead_before_they_are_due() -> None:
    clock = ManualClock(T0 + 0.125)
    bus, store = InProcessBus(), InProcessStore()
    await bus.create_topics({"egress": 1})
    router = EgressRouter(
        bus, store, LeaseKeeper(store, lease_ms=5000), topic="egress", partitions=1, pod="pod-a", clock=clock
    )
    await router.start()
    written: list[tuple[bytes, float]] = []
    wrote, read_all = asyncio.Event(), asyncio.Event()

    async def paced(egress: EgressAudio) -> None:
        written.append((egress.audio, clock()))
        wrote.set()

    async def marker(_: EgressAudio) -> None:
        read_all.set()

    batch = store.batch()
    router.attach(batch, SID, paced, lead=0.0625)
    router.attach(batch, OTHER, marker)
    await batch.execute()
    for record in [
        _echo(b"early", 1, T0 + 0.1875),  # due - lead is now: handed over at once
        _echo(b"held", 2, T0 + 0.25),  # held until due - lead
        _echo(b"marker", None, None, OTHER),
    ]:
        await bus.send("egress", record, partition=0)
    tasks = [asyncio.create_task(router.run(0.1)), asyncio.create_task(router.run_held())]
    try:
        async with asyncio.timeout(3):
            await read_all.wait()
            assert written == [(b"early", T0 + 0.125)]
            clock.now = T0 + 0.1875
            while len(written) < 2:
                wrote.clear()
                await wrote.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await router.stop()
    assert written == [(b"early", T0 + 0.125), (b"held", T0 + 0.1875)]


async def test_an_echo_sent_as_far_ahead_as_echo_sends_is_on_time_for_a_socket_with_a_longer_lead() -> None:
    # Exotel's pacer takes its echoes 300 ms before they are due; the echo service sends them
    # ECHO_SEND_AHEAD_MS (200) ahead. One handed over the moment it arrives is not late: the
    # lateness an operator reads must be the router's, not 100 ms of configuration on every echo
    clock = ManualClock(T0)
    bus, store = InProcessBus(), InProcessStore()
    await bus.create_topics({"egress": 1})
    router = EgressRouter(
        bus,
        store,
        LeaseKeeper(store, lease_ms=5000),
        topic="egress",
        partitions=1,
        pod="pod-a",
        clock=clock,
        send_ahead=0.25,
    )
    await router.start()
    arrived = asyncio.Event()

    async def paced(_: EgressAudio) -> None:
        arrived.set()

    batch = store.batch()
    router.attach(batch, SID, paced, lead=0.375)
    await batch.execute()
    count, total = _lateness("count"), _lateness("sum")
    await bus.send("egress", _echo(b"echo", 1, T0 + 0.25), partition=0)
    task = asyncio.create_task(router.run(0.1))
    try:
        async with asyncio.timeout(3):
            await arrived.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await router.stop()
    assert (_lateness("count") - count, _lateness("sum") - total) == (1, 0.0)
