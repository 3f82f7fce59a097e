"""Stops sessions nobody streams to any more: detached past the idle timeout, or held by a pod
that died (its renewals stopped). Runs on every ingest pod; a short lock keeps it single."""

import asyncio
import logging
import time

from voxbus.common.constants import Key, SessionStatus
from voxbus.common.store.base import ScoreRange
from voxbus.ingest.context import IngestContext
from voxbus.ingest.finishing import stop_detached

log = logging.getLogger(__name__)

_PAGE = 100  # due sessions read at once
# pages per round: at 5 s a round, up to 400 sessions a second can be stopped (one page a round
# left thousands of dropped sessions active minutes past their idle timeout)
_PAGES_PER_ROUND = 20


async def reap_round(ctx: IngestContext) -> int:
    """Stop what is due, a page at a time, up to `_PAGES_PER_ROUND` pages; how many were stopped."""
    stopped = 0
    for _ in range(_PAGES_PER_ROUND):
        page_stopped, due = await reap_once(ctx)
        stopped += page_stopped
        if due < _PAGE:
            break
    return stopped


async def reap_once(ctx: IngestContext) -> tuple[int, int]:
    """One page of due sessions: (how many were stopped, how many were due)."""
    now_ms = time.time_ns() // 1_000_000
    due = await ctx.store.zrange(Key.REAP_AT, ScoreRange(max=float(now_ms)), limit=_PAGE)
    stopped = 0
    for session_id, _ in due:
        if not await ctx.store.set(Key.REAPING + session_id, ctx.settings.pod_name, nx=True, ttl_ms=60_000):
            continue
        if await ctx.store.zcount(Key.CONNECTION_SLOTS + session_id, ScoreRange(min=float(now_ms))):
            await ctx.store.zrem(Key.REAP_AT, session_id)  # a socket holds it after all
            continue
        state = await ctx.registry.read(session_id)
        if state is not None and state.status == SessionStatus.ACTIVE:
            await stop_detached(ctx, session_id, "idle")
            log.info("stopped an idle session", extra={"session_id": session_id})
            stopped += 1
        await ctx.store.zrem(Key.REAP_AT, session_id)
        await ctx.store.zrem(Key.SESSION_SLOTS, session_id)
    return stopped, len(due)


async def run(ctx: IngestContext) -> None:
    interval = min(5.0, max(0.2, ctx.settings.connection_timeout_seconds / 4))
    while True:
        await asyncio.sleep(interval)
        try:
            await reap_round(ctx)
        except Exception:  # the store may be away for a moment; the next round tries again
            log.exception("reaping idle sessions failed")
