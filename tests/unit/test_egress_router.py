"""Egress records with a due time (echoes sent ahead) wait in ingest until then, in order."""

import asyncio
import time

from prometheus_client import REGISTRY

from voxbus.common.bus.base import BusMessage
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Header, Key
from voxbus.common.store.memory import InProcessStore
from voxbus.ingest.egress import EgressRouter
from voxbus.ingest.leases import LeaseKeeper

SID = "6f1c2d1e-8f5a-4d7e-9a0b-3c4d5e6f7a8b"


def _echo(audio: bytes, seq: int, due: float | None) -> BusMessage:
    headers = [(Header.TYPE, b"chunk"), (Header.SEQ, str(seq).encode())]
    if due is not None:
        headers.append((Header.DUE, str(int(due * 1e9)).encode()))
    return BusMessage(key=SID.encode(), value=audio, headers=tuple(headers))


async def test_echoes_are_written_when_due_and_in_the_order_they_came() -> None:
    bus, store = InProcessBus(), InProcessStore()
    await bus.create_topics({"egress": 1})
    router = EgressRouter(
        bus, store, LeaseKeeper(store, lease_ms=5000), topic="egress", partitions=1, pod="pod-a"
    )
    await router.start()
    written: list[tuple[bytes, float]] = []
    all_written = asyncio.Event()

    async def sink(audio: bytes) -> None:
        written.append((audio, time.time()))
        if len(written) == 5:
            all_written.set()

    lateness = "voxbus_ingest_egress_lateness_seconds_count"
    measured_before = REGISTRY.get_sample_value(lateness) or 0.0
    batch = store.batch()
    router.attach(batch, SID, sink)
    await batch.execute()
    tasks = [asyncio.create_task(router.run(0.1)), asyncio.create_task(router.run_held())]
    try:
        now = time.time()
        await bus.send("egress", _echo(b"late", 1, now - 1.0), partition=0)  # overdue: at once
        await bus.send("egress", _echo(b"first", 2, now + 0.3), partition=0)
        await bus.send("egress", _echo(b"second", 3, now + 0.3), partition=0)
        await bus.send("egress", _echo(b"overdue-but-behind", 4, now - 0.5), partition=0)
        await bus.send("egress", _echo(b"first", 2, now + 0.35), partition=0)  # sent again: seq seen
        await bus.send("egress", _echo(b"prompt", 5, None), partition=0)
        async with asyncio.timeout(3):
            await all_written.wait()
        await asyncio.sleep(0.2)  # nothing more: the repeat was dropped
    except TimeoutError:
        raise AssertionError(f"written: {written}") from None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await router.stop()
    assert [audio for audio, _ in written] == [b"late", b"first", b"second", b"overdue-but-behind", b"prompt"]
    assert written[0][1] - now < 0.1
    assert 0.29 < written[1][1] - now < 0.45  # held until due, not sent on arrival
    # lateness is measured for what had a due time (the prompt had none)
    assert (REGISTRY.get_sample_value(lateness) or 0.0) - measured_before == 4


class _Socket:
    """Attaches its bound method as the sink, as a connection does."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def deliver(self, audio: bytes) -> None:
        self.received.append(audio)


async def test_a_released_socket_leaves_no_route_and_a_resumed_one_keeps_its_own() -> None:
    store = InProcessStore()
    bus = InProcessBus()
    await bus.create_topics({"egress": 2})
    leases = LeaseKeeper(store, lease_ms=5000)
    router = EgressRouter(bus, store, leases, topic="egress", partitions=2, pod="pod-a")
    await router.start()
    first, second, other = _Socket(), _Socket(), "0b7e3c52-7d0f-4a5e-9f3e-1c2d3e4f5a6b"
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
