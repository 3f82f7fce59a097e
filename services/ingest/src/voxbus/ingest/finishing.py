"""Ending a session: the stop record, then waiting (event-driven) for the writer's files."""

from typing import Any

from voxbus.common.constants import Key, SessionField
from voxbus.common.records import AudioFormat
from voxbus.ingest.context import IngestContext
from voxbus.ingest.sessions import public_info
from voxbus.ingest.stream import RawStream


class FinishTimeout(TimeoutError):
    """The recording was not finalized within CLOSE_TIMEOUT_SECONDS."""


async def stop_detached(ctx: IngestContext, session_id: str, reason: str) -> None:
    """Stop a session no socket holds: a new epoch puts the stop after all it ever sent."""
    fields = await ctx.registry.fields(session_id)
    epoch = await ctx.store.hincrby(Key.SESSION + session_id, SessionField.EPOCH)
    fmt = AudioFormat(
        codec=fields.get(SessionField.CODEC, "pcm_s16le"),
        rate=int(fields.get(SessionField.SAMPLE_RATE, 16000)),
        channels=int(fields.get(SessionField.CHANNELS, 1)),
    )
    stream = RawStream(ctx.bus, ctx.raw_topic, session_id, fmt, epoch)
    await ctx.registry.mark_closing(session_id, reason)
    await (await stream.stop(reason))


async def wait_finished(ctx: IngestContext, session_id: str) -> dict[str, Any]:
    """The session's info once the writer finalized it; `FinishTimeout` after the close timeout."""
    key = Key.SESSION + session_id

    async def finalized() -> bool:
        return await ctx.store.hget(key, SessionField.FINALIZED) == "1"

    channel = Key.SESSION_CHANNEL + session_id
    if not await ctx.store.wait_until(channel, finalized, ctx.settings.close_timeout_seconds):
        raise FinishTimeout(f"the recording was not complete within {ctx.settings.close_timeout_seconds:g} s")
    return public_info(session_id, await ctx.registry.fields(session_id))
