"""The state-store contract, run against the in-process store and real Redis alike."""

import asyncio
import contextlib

import pytest

from tests.helpers import eventually
from voxbus.common.store.base import ScoreRange, StateStore, StoreError


async def test_set_nx_claims_a_key_once(store: StateStore, unique: str) -> None:
    key = f"lease:{unique}"
    assert await store.set(key, "pod-a", nx=True, ttl_ms=5000)
    assert not await store.set(key, "pod-b", nx=True, ttl_ms=5000)
    assert await store.get(key) == "pod-a"
    assert await store.set(key, "pod-b")  # without NX it overwrites
    assert await store.get(key) == "pod-b"


async def test_ttl_expiry_frees_the_key(store: StateStore, unique: str) -> None:
    key = f"lease:{unique}"
    assert await store.set(key, "pod-a", nx=True, ttl_ms=200)
    remaining = await store.ttl_ms(key)
    assert remaining is not None
    assert 0 < remaining <= 200
    await asyncio.sleep(0.35)  # Redis expires by its own clock: real time passing is the subject
    assert await store.get(key) is None
    assert await store.ttl_ms(key) is None
    assert await store.set(key, "pod-b", nx=True, ttl_ms=200)


async def test_lease_renew_and_release_only_by_its_holder(store: StateStore, unique: str) -> None:
    key = f"lease:{unique}"
    await store.set(key, "pod-a", ttl_ms=300)
    assert not await store.expire_if_equal(key, "pod-b", 10_000)
    assert await store.expire_if_equal(key, "pod-a", 10_000)
    remaining = await store.ttl_ms(key)
    assert remaining is not None
    assert remaining > 300
    assert not await store.delete_if_equal(key, "pod-b")
    assert await store.get(key) == "pod-a"
    assert await store.delete_if_equal(key, "pod-a")
    assert await store.get(key) is None
    assert not await store.expire_if_equal(key, "pod-a", 1000)


async def test_a_status_changes_only_from_the_expected_one(store: StateStore, unique: str) -> None:
    key = f"session:{unique}"
    assert not await store.hset_if_equal(key, "status", "active", {"status": "closing"})
    assert await store.hgetall(key) == {}  # no hash is made for a session that does not exist
    await store.hset(key, {"status": "active"})
    assert await store.hset_if_equal(key, "status", "active", {"status": "closing", "at": 1.5, "n": 2})
    assert await store.hgetall(key) == {"status": "closing", "at": "1.5", "n": "2"}
    # the writer ended it first: a close arriving later must not write `closing` over `error`
    await store.hset(key, {"status": "error"})
    batch = store.batch()
    batch.hset_if_equal(key, "status", "active", {"status": "closing"})
    assert await batch.execute() == [False]
    assert await store.hget(key, "status") == "error"


async def test_hash_fields_and_atomic_increments_from_many_tasks(store: StateStore, unique: str) -> None:
    key = f"session:{unique}"
    await store.hset(key, {"status": "active", "sample_rate": 16000, "duration": 1.5})
    assert await store.hgetall(key) == {"status": "active", "sample_rate": "16000", "duration": "1.5"}
    assert await store.hget(key, "status") == "active"
    assert await store.hget(key, "missing") is None

    async def add_chunks(worker: int) -> None:
        for _ in range(25):
            await store.hincrby(key, "chunk_count")
            await store.hincrby(key, "bytes", 640 + worker)

    await asyncio.gather(*(add_chunks(worker) for worker in range(40)))
    assert await store.hget(key, "chunk_count") == str(40 * 25)
    assert await store.hincrby(key, "bytes", 0) == sum(25 * (640 + w) for w in range(40))
    assert await store.hincrby(key, "new_counter", 5) == 5


async def test_sorted_set_index_ranges_and_pages(store: StateStore, unique: str) -> None:
    key = f"index:{unique}"
    assert await store.zadd(key, {f"s{n}": float(n * 10) for n in range(10)}) == 10
    assert await store.zadd(key, {"s0": 5.0}) == 0  # re-scored, not added
    # xx: re-score only members that exist; count those whose score changed
    leases = f"leases:{unique}"
    await store.zadd(leases, {"a": 1.0, "b": 2.0})
    assert await store.zadd(leases, {"a": 3.0, "b": 2.0, "new": 1.0}, xx=True) == 1
    assert await store.zrange(leases) == [("b", 2.0), ("a", 3.0)]
    assert await store.zadd(f"missing:{unique}", {"a": 1.0}, xx=True) == 0

    everything = await store.zrange(key)
    assert [member for member, _ in everything] == [f"s{n}" for n in range(10)]
    assert everything[0] == ("s0", 5.0)
    newest_first = await store.zrange(key, descending=True, limit=3)
    assert newest_first == [("s9", 90.0), ("s8", 80.0), ("s7", 70.0)]
    next_page = await store.zrange(key, ScoreRange(max=70.0, max_exclusive=True), descending=True, limit=3)
    assert [member for member, _ in next_page] == ["s6", "s5", "s4"]
    window = await store.zrange(key, ScoreRange(min=20.0, max=50.0), offset=1, limit=2)
    assert window == [("s3", 30.0), ("s4", 40.0)]
    assert await store.zcount(key, ScoreRange(min=20.0, min_exclusive=True)) == 7

    assert await store.zrem(key, "s1", "s2", "nope") == 2
    assert [member for member, _ in await store.zrange(key)] == ["s0", *(f"s{n}" for n in range(3, 10))]
    await store.zrem(key, "s0", *(f"s{n}" for n in range(3, 10)))
    assert await store.zrange(key) == []


async def test_wrong_type_is_a_clear_error(store: StateStore, unique: str) -> None:
    key = f"plain:{unique}"
    await store.set(key, "text")
    with pytest.raises(StoreError):
        await store.hincrby(key, "n")
    await store.hset(f"hash:{unique}", {"n": "not a number"})
    with pytest.raises(StoreError):
        await store.hincrby(f"hash:{unique}", "n")


async def test_subscribers_get_messages_published_after_they_joined(store: StateStore, unique: str) -> None:
    channel = f"events:{unique}"
    assert await store.publish(channel, "nobody listens") == 0
    async with store.subscribe(channel) as subscription:
        await store.publish(channel, "one")
        await store.publish(channel, "two")
        first, second = await subscription.get(timeout=5), await subscription.get(timeout=5)
        assert first is not None
        assert second is not None
        assert (first.channel, first.data, second.data) == (channel, "one", "two")
        assert await subscription.get(timeout=0.2) is None


async def test_wait_until_wakes_on_change_not_by_polling(store: StateStore, unique: str) -> None:
    key, channel = f"session:{unique}", f"events:{unique}"
    await store.hset(key, {"status": "active"})
    checks = 0
    checked_once = asyncio.Event()

    async def completed() -> bool:
        nonlocal checks
        checks += 1
        checked_once.set()
        return await store.hget(key, "status") == "completed"

    async def finish_later() -> None:
        await checked_once.wait()
        # Idle on purpose, the subject of the test: a waiter that polled would check again meanwhile.
        await asyncio.sleep(0.3)
        await store.hset(key, {"status": "completed"})
        await store.publish(channel, "completed")

    finisher = asyncio.create_task(finish_later(), name="finish-later")
    assert await store.wait_until(channel, completed, timeout=10)
    await finisher
    assert checks == 2  # once before waiting, once after the one notification

    assert not await store.wait_until(channel, _false, timeout=0.3)


async def _false() -> bool:
    return False


async def test_slots_are_limited_renewable_and_free_themselves(store: StateStore, unique: str) -> None:
    key, now = f"slots:{unique}", 1_000_000
    assert await store.claim_slot(key, "s1", limit=2, now_ms=now, ttl_ms=1000)
    assert await store.claim_slot(key, "s2", limit=2, now_ms=now, ttl_ms=1000)
    assert not await store.claim_slot(key, "s3", limit=2, now_ms=now, ttl_ms=1000)  # full
    assert await store.claim_slot(key, "s1", limit=2, now_ms=now + 500, ttl_ms=1000)  # renewal
    assert dict(await store.zrange(key))["s1"] == now + 1500
    assert not await store.claim_slot(key, "s3", limit=2, now_ms=now + 900, ttl_ms=1000)
    # s2 was never renewed: at now + 1000 its lease is over and its slot goes to s3
    assert await store.claim_slot(key, "s3", limit=2, now_ms=now + 1000, ttl_ms=1000)
    assert [member for member, _ in await store.zrange(key)] == ["s1", "s3"]
    await store.zrem(key, "s1")  # released
    assert await store.claim_slot(key, "s4", limit=2, now_ms=now + 1000, ttl_ms=1000)


async def test_slots_hold_the_limit_under_concurrent_claims(store: StateStore, unique: str) -> None:
    key = f"slots:{unique}"
    results = await asyncio.gather(
        *(store.claim_slot(key, f"s{n}", limit=7, now_ms=5_000, ttl_ms=60_000) for n in range(50))
    )
    assert sum(results) == 7
    assert len(await store.zrange(key)) == 7


async def test_hundreds_of_concurrent_subscriptions_each_get_their_own_messages(
    store: StateStore, unique: str
) -> None:
    channels = [f"events:{unique}:{n}" for n in range(300)]
    async with contextlib.AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(store.subscribe(c)) for c in channels]
        for n, channel in enumerate(channels):
            await store.publish(channel, f"m{n}")
        received = [await s.get(timeout=5) for s in subscriptions]
        assert [m.data if m else None for m in received] == [f"m{n}" for n in range(300)]
        assert await asyncio.gather(*(s.get(timeout=0.05) for s in subscriptions[:5])) == [None] * 5

    async def unsubscribed() -> bool:  # UNSUBSCRIBE is sent on exit; a PUBLISH on another
        return await store.publish(channels[0], "after") == 0  # connection may get in first

    await eventually(unsubscribed, what="the channels unsubscribed on exit")


async def test_a_batch_runs_its_commands_in_order_with_each_result(store: StateStore, unique: str) -> None:
    session, route, channel = f"session:{unique}", f"route:{unique}", f"ch:{unique}"
    await store.set(route, "pod-a 3", ttl_ms=300)
    async with store.subscribe(channel) as subscription:
        batch = store.batch()
        indexes = [
            batch.hset(session, {"status": "active", "chunk_count": 0}),
            batch.hincrby(session, "chunk_count", 5),
            batch.hgetall(session),
            batch.zadd(f"due:{unique}", {"a": 1.5, "b": 2.5}),
            batch.zrem(f"due:{unique}", "a", "missing"),
            batch.set(f"key:{unique}", "v", nx=True, ttl_ms=5_000),
            batch.set(f"key:{unique}", "w", nx=True, ttl_ms=5_000),  # taken: not set
            batch.expire_if_equal(route, "pod-a 3", 10_000),
            batch.expire_if_equal(route, "pod-b 1", 10_000),
            batch.delete_if_equal(route, "pod-b 1"),
            batch.publish(channel, "hello"),
        ]
        assert indexes == list(range(11))
        results = await batch.execute()
        message = await subscription.get(timeout=2)
    assert results == [
        None,
        5,
        {"status": "active", "chunk_count": "5"},
        2,
        1,
        True,
        False,
        True,
        False,
        False,
        results[10],
    ]
    assert results[10] >= 1 and message is not None and message.data == "hello"
    remaining = await store.ttl_ms(route)
    assert remaining is not None and remaining > 300  # renewed by its holder, not deleted by another
    assert await store.zrange(f"due:{unique}") == [("b", 2.5)]
    assert await store.get(f"key:{unique}") == "v"
    assert await batch.execute() == []  # executed batches are empty


async def test_a_batch_reports_a_failed_command_as_a_store_error(store: StateStore, unique: str) -> None:
    await store.set(f"plain:{unique}", "not a hash")
    batch = store.batch()
    batch.hincrby(f"plain:{unique}", "n", 1)
    with pytest.raises(StoreError):
        await batch.execute()
    with pytest.raises(ValueError, match="at least one"):
        store.batch().hset(f"h:{unique}", {})


async def test_a_subscription_cancelled_while_it_is_set_up_ends_at_once(
    store: StateStore, unique: str
) -> None:
    """A socket's close-request listener is cancelled the moment its client stops, which can be
    while the listener's subscription is still being made (redis-py's connect swallowed that
    cancel: the listener then waited for ever, and the client's stop with it)."""
    channel = f"c:{unique}"

    async def listen() -> None:
        async with store.subscribe(channel) as subscription:
            while True:
                await subscription.get()

    for _ in range(3):  # the store's first subscription (its connection is made), then later ones
        listener = asyncio.create_task(listen())
        await asyncio.sleep(0)  # it starts subscribing
        listener.cancel()
        done, _ = await asyncio.wait([listener], timeout=5)
        assert done, "a cancelled subscription still waits"
        assert listener.cancelled()
    async with store.subscribe(channel) as subscription:  # and the store still delivers
        await store.publish(channel, "after")
        message = await subscription.get()
        assert message is not None
        assert message.data == "after"
