"""Close requests a socket hears from outside it: `POST …/close` on any pod, and the pipeline
ending its session.

`POST …/close` publishes `SessionControl.CLOSE` on the session's control channel, and the pod
holding a socket of the session hears it (a publish nobody hears tells the handler that no pod
holds one, and it stops the session itself). The writer publishes `SessionNotice.FINALIZED` on
the session's event channel once the files are complete: heard while the socket still streams,
the pipeline ended the session (its recording failed), and the client is told at once instead
of streaming on audio that is dropped.
"""

from collections.abc import Callable

from voxbus.common.constants import Key
from voxbus.common.state import SessionControl, SessionNotice
from voxbus.ingest.context import IngestContext
from voxbus.ingest.finishing import CLOSED_OVER_HTTP

ENDED = "session ended"  # the reason given when a finalized record names none (voxbus always does)


async def next_close_request(
    ctx: IngestContext, session_id: str, *, finished: Callable[[], bool]
) -> str | None:
    """Wait until the session is closed from outside, and say why: `CLOSED_OVER_HTTP`, or the
    close reason the record gives once the pipeline ended it (a failed recording's error). None
    when it was finalized after `finished()`: the socket stopped it itself, and tells its client."""
    control, events = Key.SESSION_CONTROL + session_id, Key.SESSION_CHANNEL + session_id
    async with ctx.store.subscribe(control, events) as subscription:
        while True:
            message = await subscription.get()
            if message is None:
                continue
            if message.channel == control and message.data == SessionControl.CLOSE:
                return CLOSED_OVER_HTTP
            if message.channel != events or message.data != SessionNotice.FINALIZED:
                continue
            if finished():
                return None
            state = await ctx.registry.read(session_id)  # the notice is a hint; the record says
            if state is not None and state.finalized:
                return state.close_reason or ENDED
