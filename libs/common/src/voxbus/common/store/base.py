"""The state-store contract (docs/architecture.md, the state store): strings with TTL, hashes,
sorted sets, pub/sub.

Two implementations pass one contract suite: `memory.InProcessStore` and `redis.RedisStore`.
The operations are Redis's, named after it, with Redis's atomicity: each call is atomic.
TTLs are in milliseconds. Hash values come back as strings.
"""

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

HashValue = str | int | float


class StoreError(Exception):
    """The store could not do what was asked (unreachable, wrong type of key, …)."""


@dataclass(frozen=True, slots=True)
class StoreMessage:
    channel: str
    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoreRange:
    """Bounds of a sorted-set query; an exclusive bound leaves out members at exactly that score."""

    min: float = -math.inf
    max: float = math.inf
    min_exclusive: bool = False
    max_exclusive: bool = False

    def contains(self, score: float) -> bool:
        above = score > self.min if self.min_exclusive else score >= self.min
        below = score < self.max if self.max_exclusive else score <= self.max
        return above and below


ALL_SCORES = ScoreRange()


class Subscription(ABC):
    """Messages published on some channels after the subscription started."""

    @abstractmethod
    async def get(self, timeout: float | None = None) -> StoreMessage | None:
        """The next message, or None when `timeout` seconds pass without one."""


@dataclass(frozen=True, slots=True)
class BatchedCall:
    """One command of a `StoreBatch`: the store method's name and its arguments."""

    method: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


class StoreBatch:
    """Commands sent to the store together: one round trip for the lot (a Redis command costs
    the client ~250 µs of CPU alone, a pipelined one a fifth of that).

    Not a transaction: each command is atomic, as when called on the store, and they run in the
    order queued. Each method queues its command and returns the index of its result in the list
    `execute` returns; results are what the store's method of the same name returns.
    """

    def __init__(self, store: "StateStore") -> None:
        self._store = store
        self.calls: list[BatchedCall] = []

    def _queue(self, method: str, *args: Any, **kwargs: Any) -> int:
        self.calls.append(BatchedCall(method, args, kwargs))
        return len(self.calls) - 1

    def set(self, key: str, value: str, *, ttl_ms: int | None = None, nx: bool = False) -> int:
        return self._queue("set", key, value, ttl_ms=ttl_ms, nx=nx)

    def expire_if_equal(self, key: str, expected: str, ttl_ms: int) -> int:
        return self._queue("expire_if_equal", key, expected, ttl_ms)

    def delete_if_equal(self, key: str, expected: str) -> int:
        return self._queue("delete_if_equal", key, expected)

    def hset(self, key: str, mapping: Mapping[str, HashValue]) -> int:
        if not mapping:
            raise ValueError("hset needs at least one field")
        return self._queue("hset", key, mapping)

    def hset_if_equal(self, key: str, field: str, expected: str, mapping: Mapping[str, HashValue]) -> int:
        if not mapping:
            raise ValueError("hset_if_equal needs at least one field")
        return self._queue("hset_if_equal", key, field, expected, mapping)

    def hgetall(self, key: str) -> int:
        return self._queue("hgetall", key)

    def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        return self._queue("hincrby", key, field, amount)

    def zadd(self, key: str, members: Mapping[str, float], *, xx: bool = False) -> int:
        return self._queue("zadd", key, members, xx=xx)

    def zrem(self, key: str, *members: str) -> int:
        if not members:
            raise ValueError("zrem needs at least one member")
        return self._queue("zrem", key, *members)

    def publish(self, channel: str, message: str) -> int:
        return self._queue("publish", channel, message)

    async def execute(self) -> list[Any]:
        """Send every queued command; their results in order. The batch is empty afterwards."""
        calls, self.calls = self.calls, []
        return await self._store.execute_batch(calls) if calls else []


class StateStore(ABC):
    """Key/value state shared by every pod: sessions, routes, leases."""

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def ping(self) -> None:
        """Return if the store is reachable; raise `StoreError` otherwise."""

    # strings and keys
    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, key: str, value: str, *, ttl_ms: int | None = None, nx: bool = False) -> bool:
        """Set a string; with `nx` only if the key does not exist. True if it was set."""

    @abstractmethod
    async def ttl_ms(self, key: str) -> int | None:
        """Milliseconds the key has left; None if it does not exist or never expires."""

    @abstractmethod
    async def expire_if_equal(self, key: str, expected: str, ttl_ms: int) -> bool:
        """Renew a lease: set the TTL only if the string still holds `expected`."""

    @abstractmethod
    async def delete_if_equal(self, key: str, expected: str) -> bool:
        """Release a lease: delete only if the string still holds `expected`."""

    # hashes
    @abstractmethod
    async def hset(self, key: str, mapping: Mapping[str, HashValue]) -> None: ...

    @abstractmethod
    async def hset_if_equal(
        self, key: str, field: str, expected: str, mapping: Mapping[str, HashValue]
    ) -> bool:
        """Set `mapping` in the hash only if its `field` holds `expected` (a compare-and-set of a
        status); False, and nothing written, otherwise."""

    @abstractmethod
    async def hget(self, key: str, field: str) -> str | None: ...

    @abstractmethod
    async def hgetall(self, key: str) -> dict[str, str]: ...

    @abstractmethod
    async def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        """Atomically add to an integer field (created at 0); the new value."""

    # sorted sets
    @abstractmethod
    async def zadd(self, key: str, members: Mapping[str, float], *, xx: bool = False) -> int:
        """Add or re-score members; the number newly added. With `xx`, only re-score members
        that exist (add none); the number re-scored to a new score."""

    @abstractmethod
    async def zrem(self, key: str, *members: str) -> int: ...

    @abstractmethod
    async def zcount(self, key: str, scores: ScoreRange) -> int: ...

    @abstractmethod
    async def zrange(
        self,
        key: str,
        scores: ScoreRange = ALL_SCORES,
        *,
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[tuple[str, float]]:
        """Members with scores in range, ordered by (score, member), reversed if `descending`."""

    @abstractmethod
    async def claim_slot(self, key: str, member: str, *, limit: int, now_ms: int, ttl_ms: int) -> bool:
        """A lease among at most `limit`, atomically: members whose lease ended (score ≤ now_ms)
        are dropped; then `member` gets (or renews) a lease until now_ms + ttl_ms if it holds
        one already or fewer than `limit` do. True if `member` holds a lease afterwards.

        Release with `zrem`. A holder that dies stops renewing and its slot frees itself.
        """

    # several commands in one round trip
    def batch(self) -> StoreBatch:
        return StoreBatch(self)

    async def execute_batch(self, calls: list[BatchedCall]) -> list[Any]:
        """Run batched calls in order (this default: one by one; a network store pipelines them)."""
        return [await getattr(self, call.method)(*call.args, **call.kwargs) for call in calls]

    # change notification
    @abstractmethod
    async def publish(self, channel: str, message: str) -> int:
        """Send to current subscribers; how many received it (per process for Redis)."""

    @abstractmethod
    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[Subscription]:
        """Listen on channels; messages published after entering are delivered."""

    async def wait_until(
        self, channel: str, condition: Callable[[], Awaitable[bool]], timeout: float
    ) -> bool:
        """Wait for `condition` to hold, re-checking only when `channel` announces a change.

        Subscribes before the first check, so a change between check and wait is not missed.
        False if `timeout` seconds pass first.
        """
        deadline = time.monotonic() + timeout
        async with self.subscribe(channel) as subscription:
            while not await condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                await subscription.get(timeout=remaining)
        return True

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
