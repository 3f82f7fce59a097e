"""Return routes as the echo service sees them: the `state.Route` at `voxbus:route:{id}`, looked
up in the state store and reused for a short while, so a client that resumed on another ingest
pod is followed within `ttl` seconds."""

import logging
import time

from voxbus.common.constants import Key
from voxbus.common.state import Route, StateError
from voxbus.common.store.base import StateStore

log = logging.getLogger(__name__)


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
        text = await self._store.get(Key.ROUTE + session_id)
        partition = None
        if text is not None:
            try:
                partition = Route.decode(text).partition
            except StateError as exc:  # no pod writes this: treated as no socket, not a crash
                log.warning("unreadable route: %s", exc, extra={"session_id": session_id})
        self._routes[session_id] = (partition, now)
        return partition

    def forget(self, session_id: str) -> None:
        self._routes.pop(session_id, None)
