"""One live ingest process per pod name (`POD_NAME`).

The name keys this pod's egress lease and return routes; two live processes sharing it would take
each other's for their own. At startup the process claims `voxbus:pod:{name}` like any lease
(renewed, dropped at shutdown). If another process holds it, we watch it for a renewal: a live
holder renews every third of the lease and we refuse to start; a dead one (the same pod restarted
after a crash) stops renewing, and the name is ours once its lease runs out.
"""

import asyncio
import os
import socket
import time
import uuid

from voxbus.common.constants import Key
from voxbus.common.settings import SettingsError
from voxbus.common.store.base import StateStore
from voxbus.ingest.leases import LeaseKeeper


class PodNameTaken(SettingsError):
    """A live process already runs under this `POD_NAME`."""


async def claim_pod_name(store: StateStore, leases: LeaseKeeper, pod: str, *, lease_ms: int) -> None:
    """Hold the pod name until `leases.release_all()`; raise `PodNameTaken` if a live process has it."""
    key = Key.POD + pod
    me = f"{socket.gethostname()} pid {os.getpid()} {uuid.uuid4().hex[:8]}"
    # every poll falls between two renewals of a live holder, so a renewal shows as a TTL that grew
    poll = lease_ms / 6000
    deadline = time.monotonic() + lease_ms / 1000 + 2 * poll
    last_ttl: int | None = None
    while not await leases.claim_key(key, me):
        ttl, holder = await store.ttl_ms(key), await store.get(key)
        renewed = ttl is not None and last_ttl is not None and ttl > last_ttl
        if renewed or time.monotonic() > deadline:
            raise PodNameTaken(
                f"POD_NAME: {pod!r} is in use by a live process ({holder}); give each process its own"
                " name, or leave POD_NAME unset for a unique one"
            )
        last_ttl = ttl
        await asyncio.sleep(poll)
