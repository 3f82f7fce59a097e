"""In-process state store with Redis's semantics for the operations voxbus uses.

Expiry is checked on every access (a key past its deadline is gone), so no timer task is needed.
Every method runs without awaiting in between, which makes each call atomic on the event loop.
"""

import asyncio
import bisect
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from voxbus.common.store.base import (
    ALL_SCORES,
    HashValue,
    ScoreRange,
    StateStore,
    StoreError,
    StoreMessage,
    Subscription,
)


@dataclass(slots=True)
class _SortedSet:
    scores: dict[str, float] = field(default_factory=dict)
    ordered: list[tuple[float, str]] = field(default_factory=list)

    def add(self, member: str, score: float) -> bool:
        old = self.scores.get(member)
        if old is not None:
            self.ordered.pop(bisect.bisect_left(self.ordered, (old, member)))
        self.scores[member] = score
        bisect.insort(self.ordered, (score, member))
        return old is None

    def remove(self, member: str) -> bool:
        score = self.scores.pop(member, None)
        if score is None:
            return False
        self.ordered.pop(bisect.bisect_left(self.ordered, (score, member)))
        return True

    def select(self, scores: ScoreRange) -> list[tuple[float, str]]:
        lo = bisect.bisect_left(self.ordered, (scores.min, ""))
        selected = []
        for score, member in self.ordered[lo:]:
            if score > scores.max:
                break
            if scores.contains(score):
                selected.append((score, member))
        return selected


_Value = str | dict[str, str] | _SortedSet
_T = TypeVar("_T", str, dict[str, str], _SortedSet)


class _QueueSubscription(Subscription):
    def __init__(self, queue: asyncio.Queue[StoreMessage]) -> None:
        self._queue = queue

    async def get(self, timeout: float | None = None) -> StoreMessage | None:
        try:
            async with asyncio.timeout(timeout):  # not wait_for: see bus/memory.py
                return await self._queue.get()
        except TimeoutError:
            return None


class InProcessStore(StateStore):
    """The embedded store: shared by every service of a `voxbus up` process."""

    def __init__(self) -> None:
        self._data: dict[str, _Value] = {}
        self._deadlines: dict[str, float] = {}
        self._subscribers: dict[str, set[asyncio.Queue[StoreMessage]]] = {}

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def get(self, key: str) -> str | None:
        return self._typed(key, str)

    async def set(self, key: str, value: str, *, ttl_ms: int | None = None, nx: bool = False) -> bool:
        if nx and self._live(key) is not None:
            return False
        self._data[key] = value
        self._deadlines.pop(key, None)
        if ttl_ms is not None:
            self._deadlines[key] = _deadline(ttl_ms)
        return True

    async def ttl_ms(self, key: str) -> int | None:
        if self._live(key) is None or key not in self._deadlines:
            return None
        return max(0, round((self._deadlines[key] - time.monotonic()) * 1000))

    async def expire_if_equal(self, key: str, expected: str, ttl_ms: int) -> bool:
        if self._typed(key, str) != expected:
            return False
        self._deadlines[key] = _deadline(ttl_ms)
        return True

    async def delete_if_equal(self, key: str, expected: str) -> bool:
        if self._typed(key, str) != expected:
            return False
        self._drop(key)
        return True

    async def hset(self, key: str, mapping: Mapping[str, HashValue]) -> None:
        fields = self._typed(key, dict) or self._create(key, dict[str, str]())
        fields.update({name: _to_str(value) for name, value in mapping.items()})

    async def hset_if_equal(
        self, key: str, field: str, expected: str, mapping: Mapping[str, HashValue]
    ) -> bool:
        fields = self._typed(key, dict)
        if fields is None or fields.get(field) != expected:
            return False
        fields.update({name: _to_str(value) for name, value in mapping.items()})
        return True

    async def hget(self, key: str, field: str) -> str | None:
        return (self._typed(key, dict) or {}).get(field)

    async def hgetall(self, key: str) -> dict[str, str]:
        return dict(self._typed(key, dict) or {})

    async def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        fields = self._typed(key, dict) or self._create(key, dict[str, str]())
        try:
            value = int(fields.get(field, "0")) + amount
        except ValueError:
            raise StoreError(f"hash field {key}.{field} is not an integer") from None
        fields[field] = str(value)
        return value

    async def zadd(self, key: str, members: Mapping[str, float], *, xx: bool = False) -> int:
        if xx:
            existing = self._typed(key, _SortedSet)
            if existing is None:
                return 0
            changed = {m: float(s) for m, s in members.items() if existing.scores.get(m, s) != s}
            for member, score in changed.items():
                existing.add(member, score)
            return len(changed)
        zset = self._typed(key, _SortedSet) or self._create(key, _SortedSet())
        return sum(zset.add(member, float(score)) for member, score in members.items())

    async def zrem(self, key: str, *members: str) -> int:
        zset = self._typed(key, _SortedSet)
        if zset is None:
            return 0
        removed = sum(zset.remove(member) for member in members)
        if not zset.scores:
            self._drop(key)
        return removed

    async def zcount(self, key: str, scores: ScoreRange) -> int:
        zset = self._typed(key, _SortedSet)
        return 0 if zset is None else len(zset.select(scores))

    async def zrange(
        self,
        key: str,
        scores: ScoreRange = ALL_SCORES,
        *,
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[tuple[str, float]]:
        zset = self._typed(key, _SortedSet)
        if zset is None:
            return []
        selected = zset.select(scores)
        if descending:
            selected.reverse()
        end = None if limit is None else offset + limit
        return [(member, score) for score, member in selected[offset:end]]

    async def claim_slot(self, key: str, member: str, *, limit: int, now_ms: int, ttl_ms: int) -> bool:
        zset = self._typed(key, _SortedSet) or self._create(key, _SortedSet())
        for _, expired in zset.select(ScoreRange(max=float(now_ms))):
            zset.remove(expired)
        if member not in zset.scores and len(zset.scores) >= limit:
            if not zset.scores:
                self._drop(key)
            return False
        zset.add(member, float(now_ms + ttl_ms))
        return True

    async def publish(self, channel: str, message: str) -> int:
        queues = self._subscribers.get(channel, set())
        for queue in queues:
            queue.put_nowait(StoreMessage(channel, message))
        return len(queues)

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        queue: asyncio.Queue[StoreMessage] = asyncio.Queue()
        for channel in channels:
            self._subscribers.setdefault(channel, set()).add(queue)
        try:
            yield _QueueSubscription(queue)
        finally:
            for channel in channels:
                listeners = self._subscribers.get(channel)
                if listeners is not None:
                    listeners.discard(queue)
                    if not listeners:
                        del self._subscribers[channel]

    # -- internals ----------------------------------------------------------------------

    def _live(self, key: str) -> _Value | None:
        deadline = self._deadlines.get(key)
        if deadline is not None and deadline <= time.monotonic():
            self._drop(key)
            return None
        return self._data.get(key)

    def _typed(self, key: str, kind: type[_T]) -> _T | None:
        value = self._live(key)
        if value is None:
            return None
        if not isinstance(value, kind):
            raise StoreError(f"key {key!r} holds a {type(value).__name__}, not a {kind.__name__}")
        return value

    def _create(self, key: str, value: _T) -> _T:
        self._data[key] = value
        return value

    def _drop(self, key: str) -> None:
        self._data.pop(key, None)
        self._deadlines.pop(key, None)


def _deadline(ttl_ms: int) -> float:
    if ttl_ms <= 0:
        raise StoreError(f"TTL must be positive, got {ttl_ms} ms")
    return time.monotonic() + ttl_ms / 1000


def _to_str(value: HashValue) -> str:
    return value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
