"""Return routes as the echo service sees them: `voxbus:route:{id}` = "{pod} {partition}",
looked up in the state store and reused for a short while, so a client that resumed on another
ingest pod is followed within `ttl` seconds."""

import time

from voxbus.common.constants import Key
from voxbus.common.store.base import StateStore


class RouteCache:
    def __init__(self, store: StateStore, *, ttl: float) -> None:
        self._store, self._ttl = store, ttl
        self._routes: dict[str, tuple[int | None, float]] = {}  # session → (partition, looked up at)

    async def partition(self, session_id: str) -> int | None:
        """The egress partition of the pod holding the session's socket; None with no socket."""
        cached = self._routes.get(session_id)
        now = time.monotonic()
        if cached is not None and now - cached[1] < self._ttl:
            return cached[0]
        route = await self._store.get(Key.ROUTE + session_id)
        partition = int(route.split()[1]) if route else None
        self._routes[session_id] = (partition, now)
        return partition

    def forget(self, session_id: str) -> None:
        self._routes.pop(session_id, None)
