"""Background work that restarts after a crash, and what `/health` makes of it.

A service's consumer is work for the app's lifetime. When it crashes (a file-system error, a
broker that went away) it is started again after an exponential backoff and resumes from the
last commit; the handlers are replay-safe. Each crash is logged once, with its reason. Work that
crashed `WORKER_MAX_FAILURES` times in a row without making progress has stopped for good as far
as the orchestrator is concerned: `/health` fails with the reason, so Kubernetes restarts the pod
(the work keeps retrying at the longest backoff meanwhile, which is all a process without an
orchestrator can do). A task that cannot be restarted (`supervised`) fails `/health` once it died.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger(__name__)

# A run this long without a crash counts as progress even if its work never reports any.
_STABLE_SECONDS: Final = 60.0


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    """How restarts back off, and after how many crashes in a row `/health` gives up."""

    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    max_failures: int = 5

    def backoff(self, failures: int) -> float:
        """The wait before restart number `failures` of a streak (1-based)."""
        return float(min(self.backoff_max_seconds, self.backoff_seconds * 2 ** max(failures - 1, 0)))


class Work:
    """One named piece of background work as `/health` sees it, across its restarts."""

    def __init__(self, name: str, policy: RestartPolicy, *, restartable: bool = True) -> None:
        self.name = name
        self.restartable = restartable
        self._policy = policy
        self._failures = 0  # crashes in a row without progress
        self._last_error: str | None = None
        self.running = False  # False while waiting to restart

    def progressed(self) -> None:
        """The work did something useful: the crashes before now no longer count against it."""
        self._failures = 0

    def crashed(self, reason: str) -> float:
        """Count a crash; the backoff before the restart."""
        self._failures += 1
        self._last_error = reason
        return self._policy.backoff(self._failures)

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def max_failures(self) -> int:
        return self._policy.max_failures

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def failed(self) -> str | None:
        """Why the work counts as stopped for good, or None while it is (or may soon be) working."""
        if self.restartable and self._failures < self._policy.max_failures:
            return None
        if self._failures == 0:
            return None
        if not self.restartable:
            return f"stopped: {self._last_error}"
        return f"crashed {self._failures} times in a row without progress; last: {self._last_error}"


class Liveness:
    """Every piece of background work of an app; `/health` fails while any has stopped for good."""

    def __init__(self) -> None:
        self._work: dict[str, Work] = {}

    def add(self, work: Work) -> None:
        self._work[work.name] = work

    def failures(self) -> dict[str, str]:
        """The work that stopped for good, with the reason."""
        return {name: reason for name, work in self._work.items() if (reason := work.failed()) is not None}


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def restarting(
    work: Work,
    run: Callable[[Work], Coroutine[Any, Any, None]],
    *,
    sleep: Callable[[float], Coroutine[Any, Any, None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run `run(work)` until cancelled, starting it again after each crash (or return)."""
    while True:
        started = clock()
        exc_info: Exception | None = None
        work.running = True
        try:
            await run(work)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any crash of the work is restarted, and counted by /health
            reason, exc_info = describe(exc), exc
        else:
            reason = "returned (it should run until stopped)"
        finally:
            work.running = False
        if clock() - started >= _STABLE_SECONDS:
            work.progressed()
        delay = work.crashed(reason)
        log.error(
            "background work %s crashed; restarting in %.1f s",
            work.name,
            delay,
            exc_info=exc_info,
            extra={"work": work.name, "reason": reason, "failures": work.failures, "restart_in": delay},
        )
        if work.failures == work.max_failures:
            log.error(
                "background work %s has stopped for good: /health fails until it makes progress",
                work.name,
                extra={"work": work.name, "reason": work.failed()},
            )
        await sleep(delay)
