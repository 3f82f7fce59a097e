"""Ending a session: the stop record, then waiting (event-driven) for the writer's files."""

from voxbus.common.constants import Key
from voxbus.common.http_bodies import SessionInfo
from voxbus.common.session_state import SessionState
from voxbus.ingest.context import IngestContext
from voxbus.ingest.sessions import session_info
from voxbus.ingest.stream import RawStream

CLOSED_OVER_HTTP = "closed over HTTP"  # the close reason of `POST …/close`


class FinishTimeout(TimeoutError):
    """The recording was not finalized within CLOSE_TIMEOUT_SECONDS."""


async def stop_detached(ctx: IngestContext, session_id: str, reason: str) -> None:
    """Stop a session no socket holds: a new epoch puts the stop after all it ever sent."""
    state = await ctx.registry.read(session_id) or SessionState(session_id=session_id)
    epoch = await ctx.registry.new_epoch(session_id)
    stream = RawStream(ctx.bus, ctx.raw_topic, session_id, state.audio_format(), epoch)
    await ctx.registry.mark_closing(session_id, reason)
    await (await stream.stop(reason))


async def wait_finished(ctx: IngestContext, session_id: str) -> SessionInfo:
    """The session's info once the writer finalized it; `FinishTimeout` after the close timeout."""

    async def finalized() -> bool:
        return await ctx.registry.finalized(session_id)

    channel = Key.SESSION_CHANNEL + session_id
    if not await ctx.store.wait_until(channel, finalized, ctx.settings.close_timeout_seconds):
        raise FinishTimeout(f"the recording was not complete within {ctx.settings.close_timeout_seconds:g} s")
    return session_info(await ctx.registry.read(session_id) or SessionState(session_id=session_id))
