"""Redis state store via redis.asyncio; compare-and-set leases are small Lua scripts."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, ResponseError
from redis.maint_notifications import MaintNotificationsConfig

from voxbus.common.store.base import (
    ALL_SCORES,
    BatchedCall,
    HashValue,
    ScoreRange,
    StateStore,
    StoreError,
    StoreMessage,
    Subscription,
)

_EXPIRE_IF_EQUAL: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_DELETE_IF_EQUAL: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
_HSET_IF_EQUAL: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  return 1
end
return 0
"""

log = logging.getLogger(__name__)

# what a listener is handed when the pub/sub connection is back after it was lost: whatever was
# published meanwhile is gone, so a waiter looks again at what it waits for
RECONNECTED: Final = ""
_RECONNECT_SECONDS: Final = 0.5  # between attempts while Redis is away

_CLAIM_SLOT: Final = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2] + ARGV[4], ARGV[1])
  return 1
end
return 0
"""


class _QueueSubscription(Subscription):
    def __init__(self, queue: asyncio.Queue[StoreMessage]) -> None:
        self._queue = queue

    async def get(self, timeout: float | None = None) -> StoreMessage | None:
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None


class _PubSubHub:
    """Every subscription of this process over ONE Redis connection: a socket per session
    would be a Redis connection per session. Channels are subscribed while anyone listens."""

    def __init__(self, redis: Redis) -> None:
        self._pubsub: PubSub = redis.pubsub()
        self._listeners: dict[str, set[asyncio.Queue[StoreMessage]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def add(self, channels: tuple[str, ...], queue: asyncio.Queue[StoreMessage]) -> None:
        async with self._lock:
            new = [channel for channel in channels if channel not in self._listeners]
            for channel in channels:
                self._listeners.setdefault(channel, set()).add(queue)
            if new:
                await self._pubsub.subscribe(*new)
            if self._reader is None:
                self._reader = asyncio.create_task(self._read(), name="redis-pubsub")

    async def remove(self, channels: tuple[str, ...], queue: asyncio.Queue[StoreMessage]) -> None:
        async with self._lock:
            idle = []
            for channel in channels:
                listeners = self._listeners.get(channel)
                if listeners is not None:
                    listeners.discard(queue)
                    if not listeners:
                        del self._listeners[channel]
                        idle.append(channel)
            if idle:
                await self._pubsub.unsubscribe(*idle)

    async def _read(self) -> None:
        """Hand every message to its channel's listeners, for the life of the store. When Redis
        goes away the next read reconnects and subscribes again (redis-py), and once it has,
        every listener is woken with `RECONNECTED`."""
        lost = False
        while True:
            if not self._pubsub.subscribed:
                await asyncio.sleep(0.05)  # nothing subscribed: get_message would return at once
                continue
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                if not lost:
                    log.warning("Redis pub/sub connection lost; reconnecting", extra={"reason": repr(exc)})
                lost = True
                await asyncio.sleep(_RECONNECT_SECONDS)  # Redis is away: nothing announces its return
                continue
            if lost:
                lost = False
                log.info("Redis pub/sub connection back")
                for channel, listeners in self._listeners.items():
                    for queue in listeners:
                        queue.put_nowait(StoreMessage(channel, RECONNECTED))
            if message is None:
                continue
            channel = str(message["channel"])
            for queue in self._listeners.get(channel, ()):
                queue.put_nowait(StoreMessage(channel, str(message["data"])))

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]


class RedisStore(StateStore):
    """One connection pool per process."""

    def __init__(self, url: str) -> None:
        self._url = url
        # a blocking pool: under load a command waits for a free connection instead of failing.
        # Maintenance notifications off: with them on ("auto", redis-py's default) the pool hands
        # out a connection without checking that Redis closed it, so after a Redis restart every
        # pooled connection failed its next command
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            max_connections=64,
            timeout=10,
            maint_notifications_config=MaintNotificationsConfig(enabled=False),
        )
        self._redis: Redis = Redis.from_pool(pool)  # owns the pool: aclose() closes its connections
        self._expire_if_equal = self._redis.register_script(_EXPIRE_IF_EQUAL)
        self._delete_if_equal = self._redis.register_script(_DELETE_IF_EQUAL)
        self._claim_slot = self._redis.register_script(_CLAIM_SLOT)
        self._hset_if_equal = self._redis.register_script(_HSET_IF_EQUAL)
        self._hub = _PubSubHub(self._redis)

    async def start(self) -> None:
        await self.ping()

    async def close(self) -> None:
        await self._hub.close()
        await self._redis.aclose()

    async def ping(self) -> None:
        await self._call(self._redis.ping())

    async def get(self, key: str) -> str | None:
        value: str | None = await self._call(self._redis.get(key))
        return value

    async def set(self, key: str, value: str, *, ttl_ms: int | None = None, nx: bool = False) -> bool:
        return bool(await self._call(self._redis.set(key, value, px=ttl_ms, nx=nx)))

    async def ttl_ms(self, key: str) -> int | None:
        remaining = int(await self._call(self._redis.pttl(key)))
        return remaining if remaining >= 0 else None

    async def expire_if_equal(self, key: str, expected: str, ttl_ms: int) -> bool:
        return bool(await self._call(self._expire_if_equal(keys=[key], args=[expected, ttl_ms])))

    async def delete_if_equal(self, key: str, expected: str) -> bool:
        return bool(await self._call(self._delete_if_equal(keys=[key], args=[expected])))

    async def hset(self, key: str, mapping: Mapping[str, HashValue]) -> None:
        if mapping:
            await self._call(self._redis.hset(key, mapping=dict(mapping)))  # type: ignore[arg-type]

    async def hset_if_equal(
        self, key: str, field: str, expected: str, mapping: Mapping[str, HashValue]
    ) -> bool:
        args = [field, expected, *_flat(mapping)]
        return bool(await self._call(self._hset_if_equal(keys=[key], args=args)))

    async def hget(self, key: str, field: str) -> str | None:
        value: str | None = await self._call(self._redis.hget(key, field))
        return value

    async def hgetall(self, key: str) -> dict[str, str]:
        return dict(await self._call(self._redis.hgetall(key)))

    async def hincrby(self, key: str, field: str, amount: int = 1) -> int:
        return int(await self._call(self._redis.hincrby(key, field, amount)))

    async def zadd(self, key: str, members: Mapping[str, float], *, xx: bool = False) -> int:
        return int(await self._call(self._redis.zadd(key, dict(members), xx=xx, ch=xx)))

    async def zrem(self, key: str, *members: str) -> int:
        return int(await self._call(self._redis.zrem(key, *members))) if members else 0

    async def zcount(self, key: str, scores: ScoreRange) -> int:
        low, high = _bounds(scores)
        return int(await self._call(self._redis.zcount(key, low, high)))

    async def zrange(
        self,
        key: str,
        scores: ScoreRange = ALL_SCORES,
        *,
        descending: bool = False,
        offset: int = 0,
        limit: int | None = None,
    ) -> list[tuple[str, float]]:
        low, high = _bounds(scores)
        start, num = (offset, -1 if limit is None else limit) if offset or limit is not None else (None, None)
        if descending:
            rows = await self._call(
                self._redis.zrevrangebyscore(key, high, low, start=start, num=num, withscores=True)
            )
        else:
            rows = await self._call(
                self._redis.zrangebyscore(key, low, high, start=start, num=num, withscores=True)
            )
        return [(str(member), float(score)) for member, score in rows]

    async def claim_slot(self, key: str, member: str, *, limit: int, now_ms: int, ttl_ms: int) -> bool:
        claimed = await self._call(self._claim_slot(keys=[key], args=[member, now_ms, limit, ttl_ms]))
        return bool(claimed)

    async def publish(self, channel: str, message: str) -> int:
        return int(await self._call(self._redis.publish(channel, message)))

    async def execute_batch(self, calls: list[BatchedCall]) -> list[Any]:
        async with self._redis.pipeline(transaction=False) as pipe:
            converters = []
            for call in calls:
                queue, convert = _PIPELINED[call.method]
                queue(pipe, *call.args, **call.kwargs)
                converters.append(convert)
            results = await self._call(pipe.execute())
        return [convert(result) for convert, result in zip(converters, results, strict=True)]

    @asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[Subscription]:
        queue: asyncio.Queue[StoreMessage] = asyncio.Queue()
        try:
            await self._call(self._hub.add(channels, queue))
            yield _QueueSubscription(queue)
        finally:
            await self._call(self._hub.remove(channels, queue))

    async def _call(self, awaitable: Any) -> Any:
        task = asyncio.current_task()
        cancels = task.cancelling() if task is not None else 0
        try:
            result = await awaitable
        except ResponseError as exc:
            raise StoreError(str(exc)) from exc
        except (RedisError, OSError) as exc:
            raise StoreError(f"Redis at {self._url} failed: {exc!r}") from exc
        if task is not None and task.cancelling() > cancels:
            # redis-py swallowed a cancel of this task (its connect does, while it connects): the
            # task must still end, or a listener cancelled as it subscribes waits for ever
            raise asyncio.CancelledError
        return result


def _none(_: Any) -> None:
    return None


# StoreBatch's commands on a pipeline: how to queue each, how to turn its reply into the result
# of the store method of the same name. Scripts go as EVAL, not EVALSHA: a pipeline of EVALSHA
# asks SCRIPT EXISTS first (one more round trip), and Redis finds the compiled script by hash anyway.
_PIPELINED: Final[dict[str, tuple[Callable[..., Any], Callable[[Any], Any]]]] = {
    "set": (lambda pipe, key, value, *, ttl_ms, nx: pipe.set(key, value, px=ttl_ms, nx=nx), bool),
    "expire_if_equal": (
        lambda pipe, key, expected, ttl_ms: pipe.eval(_EXPIRE_IF_EQUAL, 1, key, expected, ttl_ms),
        bool,
    ),
    "delete_if_equal": (lambda pipe, key, expected: pipe.eval(_DELETE_IF_EQUAL, 1, key, expected), bool),
    "hset": (lambda pipe, key, mapping: pipe.hset(key, mapping=dict(mapping)), _none),
    "hset_if_equal": (
        lambda pipe, key, field, expected, mapping: pipe.eval(
            _HSET_IF_EQUAL, 1, key, field, expected, *_flat(mapping)
        ),
        bool,
    ),
    "hgetall": (lambda pipe, key: pipe.hgetall(key), dict),
    "hincrby": (lambda pipe, key, field, amount: pipe.hincrby(key, field, amount), int),
    "zadd": (lambda pipe, key, members, *, xx: pipe.zadd(key, dict(members), xx=xx, ch=xx), int),
    "zrem": (lambda pipe, key, *members: pipe.zrem(key, *members), int),
    "publish": (lambda pipe, channel, message: pipe.publish(channel, message), int),
}


def _flat(mapping: Mapping[str, HashValue]) -> list[str | int | float]:
    """A hash mapping as HSET's field value field value … arguments."""
    return [part for name, value in mapping.items() for part in (name, value)]


def _bounds(scores: ScoreRange) -> tuple[str, str]:
    def bound(value: float, exclusive: bool) -> str:
        text = "-inf" if value == float("-inf") else "+inf" if value == float("inf") else repr(value)
        return f"({text}" if exclusive else text

    return bound(scores.min, scores.min_exclusive), bound(scores.max, scores.max_exclusive)
