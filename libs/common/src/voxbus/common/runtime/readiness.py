"""Readiness: named dependency checks run by `/ready` (bus, store, and whatever services add)."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Final

Check = Callable[[], Awaitable[None]]

CHECK_TIMEOUT_SECONDS: Final = 2.0


class Readiness:
    """A check passes when it returns and fails when it raises (or takes over 2 s)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, name: str, check: Check) -> None:
        self._checks[name] = check

    async def run(self) -> dict[str, str]:
        """'ok' or the failure's text, per check."""
        names = list(self._checks)
        results = await asyncio.gather(
            *(self._one(self._checks[name]) for name in names), return_exceptions=False
        )
        return dict(zip(names, results, strict=True))

    @staticmethod
    async def _one(check: Check) -> str:
        try:
            async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
                await check()
        except TimeoutError:
            return f"timed out after {CHECK_TIMEOUT_SECONDS:g} s"
        except Exception as exc:  # a failing dependency of any kind makes the service not ready
            return f"{type(exc).__name__}: {exc}"
        return "ok"
