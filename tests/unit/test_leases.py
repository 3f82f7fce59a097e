"""The lease keeper renews what the pod holds in batches, and never re-creates what it let go."""

import logging
import time

import pytest

from tests.helpers import ManualClock, score
from voxbus.common.store.memory import InProcessStore
from voxbus.ingest.leases import LeaseKeeper


async def test_renewals_push_every_lease_forward_and_skip_what_was_let_go() -> None:
    store, clock = InProcessStore(), ManualClock(1_000_000.0)
    keeper = LeaseKeeper(store, lease_ms=1000, clock=clock)
    assert await keeper.hold_slot("slots", "held", limit=300)
    for n in range(250):  # more than one round trip's worth
        assert await keeper.hold_slot("slots", f"s{n}", limit=300)
    batch = store.batch()
    keeper.hold_deadline(batch, "reap-at", "session", extra_ms=5000)
    keeper.hold_key(batch, "route:session", "pod-a 3")
    keeper.hold_deadline(batch, "reap-at", "released", extra_ms=0)
    keeper.drop(batch, "reap-at", "released")
    await batch.execute()
    before = await score(store, "slots", "held")
    await store.zrem("reap-at", "session")  # removed behind our back (the deadline is still ours)
    clock.now += 0.25
    await keeper.renew_all()
    after = await score(store, "slots", "held")
    assert before is not None and after == before + 250
    assert len(await store.zrange("slots")) == 251
    assert await score(store, "reap-at", "session") is not None  # due again
    assert await score(store, "reap-at", "released") is None  # let go: not brought back
    remaining = await store.ttl_ms("route:session")
    assert remaining is not None and remaining > 900


async def test_an_expired_slot_is_claimed_again_while_there_is_room() -> None:
    store = InProcessStore()
    keeper = LeaseKeeper(store, lease_ms=1000)
    assert await keeper.hold_slot("slots", "mine", limit=1)
    await store.zrem("slots", "mine")  # as if it had expired and been swept
    await keeper.renew_all()
    assert await score(store, "slots", "mine") is not None
    await store.zrem("slots", "mine")
    now_ms = time.time_ns() // 1_000_000
    assert await store.claim_slot("slots", "theirs", limit=1, now_ms=now_ms, ttl_ms=60_000)
    await keeper.renew_all()  # no room now: lost, and logged
    assert await score(store, "slots", "mine") is None


async def test_a_route_another_pod_took_is_let_go_quietly_and_an_expired_one_is_claimed_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InProcessStore()
    keeper = LeaseKeeper(store, lease_ms=1000)
    batch = store.batch()
    keeper.hold_key(batch, "route:moved", "pod-a 1")
    keeper.hold_key(batch, "route:expired", "pod-a 1")
    await batch.execute()
    await store.set("route:moved", "pod-b 2", ttl_ms=60_000)  # the session resumed on pod B
    await store.delete_if_equal(
        "route:expired", "pod-a 1"
    )  # as if the store had been away longer than the lease
    with caplog.at_level(logging.INFO, logger="voxbus.ingest.leases"):
        for _ in range(3):
            await keeper.renew_all()
    assert [r.levelno for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert await store.get("route:moved") == "pod-b 2"
    ttl = await store.ttl_ms("route:moved")
    assert ttl is not None and ttl > 1000  # B's TTL, not ours
    assert await store.get("route:expired") == "pod-a 1"  # still ours: claimed again
    moved = [r for r in caplog.records if getattr(r, "key", None) == "route:moved"]
    assert len(moved) == 1  # said once, not at every renewal

    # released by B later: A does not bring it back
    await store.delete_if_equal("route:moved", "pod-b 2")
    await keeper.renew_all()
    assert await store.get("route:moved") is None


async def test_a_lost_exclusive_lease_is_an_error_once(caplog: pytest.LogCaptureFixture) -> None:
    store = InProcessStore()
    keeper = LeaseKeeper(store, lease_ms=1000)
    assert await keeper.claim_key("egress-lease:0", "pod-a")
    await store.set("egress-lease:0", "pod-b", ttl_ms=60_000)
    with caplog.at_level(logging.INFO, logger="voxbus.ingest.leases"):
        for _ in range(3):
            await keeper.renew_all()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [getattr(r, "key", None) for r in errors] == ["egress-lease:0"]
    await keeper.release_all()
    assert await store.get("egress-lease:0") == "pod-b"
