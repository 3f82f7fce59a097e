"""Everything this pod holds with a TTL, renewed by one task: slots, deadlines, keys.

If the pod dies the renewals stop and, `LEASE_SECONDS` later, what it held is free again.
Sorted-set entries come in two kinds: slots (at most `limit` members, `claim_slot`) and deadlines
(no limit; the score is when the member is due, pushed forward at each renewal). Keys come in two
kinds too: exclusive leases (`claim_key`: nobody else may hold them) and shared ones (`hold_key`: a
session's route, which the next pod that serves the session overwrites).

What expired before its renewal (the store was away) is claimed again; what someone else holds
now is no longer renewed: a lease is lost at most once, and said so once.
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from voxbus.common.store.base import StateStore, StoreBatch

log = logging.getLogger(__name__)

_RENEWALS_PER_TRIP = 100


@dataclass(frozen=True, slots=True)
class _Entry:
    limit: int | None  # None: a deadline, not a slot
    extra_ms: int  # a deadline is due this long after the lease would end


@dataclass(frozen=True, slots=True)
class _HeldKey:
    value: str
    exclusive: bool  # losing it is an error; a shared key (a route) is taken over in normal work


class LeaseKeeper:
    """Writes that need no answer are queued on a `StoreBatch` the caller sends with its own
    (one round trip for everything a socket opening or closing writes)."""

    def __init__(self, store: StateStore, *, lease_ms: int, clock: Callable[[], float] = time.time) -> None:
        """`clock`: wall-clock seconds, what every pod's lease deadlines are compared with."""
        self._store, self._lease_ms, self._clock = store, lease_ms, clock
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._keys: dict[str, _HeldKey] = {}

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def hold_slot(self, key: str, member: str, limit: int) -> bool:
        """Claim one of `limit` slots in `key`; renewed until dropped or let go."""
        if await self._claim(key, member, limit):
            self._entries[(key, member)] = _Entry(limit, 0)
            return True
        return False

    def hold_deadline(self, batch: StoreBatch, key: str, member: str, *, extra_ms: int) -> None:
        """Keep `member` due at (now + lease + extra_ms), renewed until dropped or let go."""
        self._entries[(key, member)] = _Entry(None, extra_ms)
        batch.zadd(key, {member: self._now_ms() + self._lease_ms + extra_ms})

    def let_go(self, batch: StoreBatch, key: str, member: str, *, after_ms: int) -> None:
        """Stop renewing an entry but keep it `after_ms` longer (a session waiting to be resumed)."""
        self._entries.pop((key, member), None)
        batch.zadd(key, {member: self._now_ms() + after_ms})

    def drop(self, batch: StoreBatch, key: str, member: str) -> None:
        self._entries.pop((key, member), None)
        batch.zrem(key, member)

    async def claim_key(self, key: str, value: str) -> bool:
        """Take `key` if nobody holds it (SET NX with the lease TTL); renewed until `drop_key`."""
        if await self._store.set(key, value, nx=True, ttl_ms=self._lease_ms):
            self._keys[key] = _HeldKey(value, exclusive=True)
            return True
        return False

    def hold_key(self, batch: StoreBatch, key: str, value: str) -> None:
        """Set `key` to `value` with the lease TTL; renewed until `drop_key` or someone else sets it."""
        self._keys[key] = _HeldKey(value, exclusive=False)
        batch.set(key, value, ttl_ms=self._lease_ms)

    def drop_key(self, batch: StoreBatch, key: str) -> None:
        held = self._keys.pop(key, None)
        if held is not None:
            batch.delete_if_equal(key, held.value)

    async def renew_all(self) -> None:
        """Renew everything, a round trip per `_RENEWALS_PER_TRIP`: one batch of thousands
        would hold the event loop for tens of ms. A renewal never re-creates what was released
        while it was on its way (XX, compare-and-set); a slot that expired is claimed again."""
        entries, keys = list(self._entries.items()), list(self._keys.items())
        for start in range(0, len(entries), _RENEWALS_PER_TRIP):
            await self._renew_entries(entries[start : start + _RENEWALS_PER_TRIP])
        for start in range(0, len(keys), _RENEWALS_PER_TRIP):
            await self._renew_keys(keys[start : start + _RENEWALS_PER_TRIP])

    async def _renew_entries(self, entries: list[tuple[tuple[str, str], _Entry]]) -> None:
        batch, now = self._store.batch(), self._now_ms()
        for (key, member), entry in entries:
            batch.zadd(key, {member: now + self._lease_ms + entry.extra_ms}, xx=True)
        renewed = await batch.execute()
        for ((key, member), entry), ok in zip(entries, renewed, strict=True):
            if ok or (key, member) not in self._entries:
                continue
            if entry.limit is None:  # a deadline someone removed: still ours, so due again
                await self._store.zadd(key, {member: self._now_ms() + self._lease_ms + entry.extra_ms})
            elif not await self._claim(key, member, entry.limit):
                if self._entries.get((key, member)) == entry:
                    del self._entries[(key, member)]  # others fill it now: renewing cannot help
                log.error("a slot lease was lost before its renewal", extra={"key": key, "member": member})

    async def _renew_keys(self, keys: list[tuple[str, _HeldKey]]) -> None:
        batch = self._store.batch()
        for key, held in keys:
            batch.expire_if_equal(key, held.value, self._lease_ms)
        renewed = await batch.execute()
        for (key, held), ok in zip(keys, renewed, strict=True):
            if not ok and self._keys.get(key) == held:
                await self._lost_key(key, held)

    async def _lost_key(self, key: str, held: _HeldKey) -> None:
        """A renewal found `key` gone or someone else's: claim it again if free, else let it go."""
        if await self._store.set(key, held.value, nx=True, ttl_ms=self._lease_ms):
            if self._keys.get(key) != held:  # dropped while we claimed it: not ours after all
                await self._store.delete_if_equal(key, held.value)
                return
            log.warning("a lease expired before its renewal and was claimed again", extra={"key": key})
            return
        if self._keys.get(key) == held:
            del self._keys[key]
        if held.exclusive:
            log.error("a lease was lost before its renewal", extra={"key": key})
        else:  # the session moved: its new pod wrote the route
            log.info("a route was taken over by another pod; no longer renewed", extra={"key": key})

    async def run(self) -> None:
        """Renew every third of the lease, until cancelled."""
        while True:
            await asyncio.sleep(self._lease_ms / 3000)
            try:
                await self.renew_all()
            except Exception:  # the store may be away for a moment; the next round tries again
                log.exception("renewing leases failed")

    async def release_all(self) -> None:
        batch = self._store.batch()
        for key, member in list(self._entries):
            self.drop(batch, key, member)
        for key in list(self._keys):
            self.drop_key(batch, key)
        await batch.execute()

    async def _claim(self, key: str, member: str, limit: int) -> bool:
        return await self._store.claim_slot(
            key, member, limit=limit, now_ms=self._now_ms(), ttl_ms=self._lease_ms
        )
