"""Event-loop lag: how late a task that asked to sleep an interval wakes up.

Everything in a voxbus process shares one event loop; a callback that blocks it (a slow decode,
a GC pause, a blocking call) delays every socket and every ack. One small task per process sleeps
`interval` seconds at a time and observes how much later than asked it woke.
"""

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Final

from prometheus_client import Histogram

INTERVAL_SECONDS: Final = 0.25

LOOP_LAG = Histogram(
    "voxbus_runtime_event_loop_lag_seconds",
    f"How late a task sleeping {INTERVAL_SECONDS:g} s woke up: the event loop's scheduling delay",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


class LoopLagMonitor:
    def __init__(
        self,
        *,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep,
        observe: Callable[[float], None] = LOOP_LAG.observe,
    ) -> None:
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._observe = observe

    async def tick(self) -> float:
        """Sleep one interval; observe and return how late the wake-up was."""
        asked = self._clock()
        await self._sleep(self._interval)
        late = max(0.0, self._clock() - asked - self._interval)
        self._observe(late)
        return late

    async def run(self) -> None:
        while True:
            await self.tick()


async def monitor_loop_lag() -> None:
    await LoopLagMonitor().run()
