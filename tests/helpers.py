"""Small helpers the test modules share."""

import asyncio
import time
from collections.abc import Awaitable, Callable

from prometheus_client import REGISTRY

from voxbus.common.bus.base import ConsumedRecord, Consumer
from voxbus.common.records import BusMessage
from voxbus.common.store.base import StateStore
from voxbus.devinfra.ports import free_port  # noqa: F401 - re-exported: the tests' server ports


def message(key: str, value: bytes, **headers: str) -> BusMessage:
    return BusMessage(
        key=key.encode(),
        value=value,
        headers=tuple((name, text.encode()) for name, text in headers.items()),
    )


async def consume(consumer: Consumer, count: int, *, timeout: float = 30.0) -> list[ConsumedRecord]:
    """Exactly the next `count` records (fails if fewer arrive within `timeout`)."""
    records: list[ConsumedRecord] = []
    deadline = time.monotonic() + timeout
    while len(records) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"got {len(records)} of {count} records within {timeout} s")
        records.extend(
            await consumer.getmany(
                timeout_ms=int(min(remaining, 1.0) * 1000), max_records=count - len(records)
            )
        )
    return records


async def consume_quiet(consumer: Consumer, *, quiet: float = 1.5) -> list[ConsumedRecord]:
    """Everything that arrives until nothing has for `quiet` seconds."""
    records: list[ConsumedRecord] = []
    while batch := await consumer.getmany(timeout_ms=int(quiet * 1000)):
        records.extend(batch)
    return records


async def wait_for_assignment(consumer: Consumer, expected: int, *, timeout: float = 30.0) -> None:
    """Poll the consumer (which drives group membership) until it owns `expected` partitions.

    Only for topics with nothing to read yet: a record it polls is not returned.
    """
    deadline = time.monotonic() + timeout
    while len(consumer.assignment()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"consumer owns {len(consumer.assignment())} partitions, expected {expected}"
            )
        await consumer.getmany(timeout_ms=100, max_records=1)
        await asyncio.sleep(0)  # a yield, not a wait: the in-process bus may answer without one


async def score(store: StateStore, key: str, member: str) -> float | None:
    """A sorted-set member's score, None if absent (the store has no ZSCORE: no service needs one)."""
    return dict(await store.zrange(key)).get(member)


async def eventually(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout: float = 5.0, interval: float = 0.01
) -> None:
    """Return as soon as `check()` holds, looking every `interval` s; fail naming `what` after
    `timeout` s. Only for state no event announces (a metric, a commit point that moves in a
    callback)."""
    try:
        async with asyncio.timeout(timeout):
            while not await check():  # noqa: ASYNC110 - what it waits for announces nothing
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"not within {timeout:g} s: {what}") from None


def rejected_messages(protocol: str, reason: str) -> float:
    """This process's count of `protocol` messages ingest rejected for `reason` (an embedded
    server's metrics live in the test's registry)."""
    value = REGISTRY.get_sample_value(
        "voxbus_ingest_rejected_messages_total", {"protocol": protocol, "reason": reason}
    )
    return value or 0.0


class ManualClock:
    """A clock for code that takes one (`clock=`): it reads `now`, which moves only when the test
    sets it, so what the code did at each reading is exact."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
