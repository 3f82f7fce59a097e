"""One timer structure for every session: a heap of due times, driven by one task.

`push` is cheap and wakes the task only when the new item is due before everything queued;
`run` sleeps until the earliest due time and hands every due item to the callback, in due order
(ties in push order), so one session's items keep their order when their due times are ordered.
"""

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class DueQueue(Generic[T]):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, item: T) -> None:
        """Queue `item` for `due` (seconds on the queue's clock, wall time by default)."""
        heapq.heappush(self._heap, (due, next(self._order), item))
        if self._heap[0][2] is item:
            self._wake.set()

    async def run(self, on_due: Callable[[list[tuple[float, T]]], Awaitable[None]]) -> None:
        """Until cancelled: hand each batch of due items, as (due, item), to `on_due`."""
        heap = self._heap
        while True:
            now = self._clock()
            due: list[tuple[float, T]] = []
            while heap and heap[0][0] <= now:
                when, _, item = heapq.heappop(heap)
                due.append((when, item))
            if due:
                await on_due(due)
                continue
            self._wake.clear()
            wait = heap[0][0] - now if heap else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()
