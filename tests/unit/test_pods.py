"""A pod name is held by one live ingest process: a second is refused, a crashed one's is taken over."""

import asyncio

import pytest

from voxbus.common.constants import Key
from voxbus.common.store.memory import InProcessStore
from voxbus.ingest.leases import LeaseKeeper
from voxbus.ingest.pods import PodNameTaken, claim_pod_name

LEASE_MS = 600


async def test_a_name_a_live_process_holds_is_refused_and_free_again_once_it_stopped() -> None:
    store = InProcessStore()
    first = LeaseKeeper(store, lease_ms=LEASE_MS)
    await claim_pod_name(store, first, "ingest-0", lease_ms=LEASE_MS)
    renewing = asyncio.create_task(first.run())
    try:
        with pytest.raises(PodNameTaken, match="POD_NAME: 'ingest-0' is in use by a live process"):
            await claim_pod_name(store, LeaseKeeper(store, lease_ms=LEASE_MS), "ingest-0", lease_ms=LEASE_MS)
        holder = await store.get(Key.POD + "ingest-0")
    finally:
        renewing.cancel()
        await asyncio.gather(renewing, return_exceptions=True)
    await first.release_all()  # a graceful stop gives the name back at once
    second = LeaseKeeper(store, lease_ms=LEASE_MS)
    await claim_pod_name(store, second, "ingest-0", lease_ms=LEASE_MS)
    assert await store.get(Key.POD + "ingest-0") not in (None, holder)


async def test_a_crashed_holders_name_is_taken_once_its_lease_ran_out() -> None:
    store = InProcessStore()
    crashed = LeaseKeeper(store, lease_ms=LEASE_MS)
    await claim_pod_name(store, crashed, "ingest-0", lease_ms=LEASE_MS)  # and never renewed
    restarted = LeaseKeeper(store, lease_ms=LEASE_MS)
    await claim_pod_name(store, restarted, "ingest-0", lease_ms=LEASE_MS)
    await restarted.release_all()
    assert await store.get(Key.POD + "ingest-0") is None
