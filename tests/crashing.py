"""A state store that dies at a chosen write: the crash-point tests' stand-in for a process
killed just before that write reached the store."""

from collections.abc import Awaitable, Callable
from typing import Any, Final, cast

from voxbus.common.store.base import BatchedCall, StateStore, StoreBatch

# Every StateStore method that changes the store.
WRITES: Final = frozenset(
    {
        "set",
        "expire_if_equal",
        "delete_if_equal",
        "hset",
        "hset_if_equal",
        "hincrby",
        "zadd",
        "zrem",
        "claim_slot",
        "publish",
    }
)


class Crash(Exception):
    pass


class CrashingStore:
    """Passes every call to `store`, but its `crash_at`-th write (counted across the restarts
    that share it, batched writes one by one) raises `Crash` instead, once; 0 never crashes.

    `writes` counts the writes attempted, `crashes` the crashes raised: a test asserts the crash
    it claims did happen (a crash point past the last write would pass without one).
    """

    def __init__(self, store: StateStore, crash_at: int) -> None:
        self._store = store
        self.crash_at = crash_at
        self.writes = 0
        self.crashes = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        return self._counted(name, method) if name in WRITES else method

    def _counted(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def write(*args: Any, **kwargs: Any) -> Any:
            self.writes += 1
            if self.writes == self.crash_at:
                self.crashes += 1
                raise Crash(f"died before store write {self.writes} ({name})")
            return await method(*args, **kwargs)

        return write

    def batch(self) -> StoreBatch:
        return StoreBatch(self.as_store())

    async def execute_batch(self, calls: list[BatchedCall]) -> list[Any]:
        return [await getattr(self, call.method)(*call.args, **call.kwargs) for call in calls]

    def as_store(self) -> StateStore:
        """This, typed as what services take."""
        return cast(StateStore, self)
