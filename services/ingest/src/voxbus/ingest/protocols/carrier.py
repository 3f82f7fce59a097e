"""What every telephony carrier's media socket does the same way (Vonage, Exotel; Twilio next),
whatever its wire format: the call's session in the call's mode, the `CallMedia` and `CallDtmf`
events for the telephony service, a pacer for outbound audio (prompts, echoes, clears, marks),
barge-in, and refusals logged and counted without ending the call. Each carrier's adapter parses
its own messages and calls these."""

import logging
import time
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from typing import ClassVar, Final

from voxbus.common.call_events import CallDtmf, CallMedia
from voxbus.common.carrier_events import CARRIER_MESSAGE_REASONS
from voxbus.common.records import AudioFormat, EchoSettings, EgressAudio, EgressKind
from voxbus.common.settings import TELEPHONY_MODES, call_mode
from voxbus.common.vonage_messages import CALL_ID_MAX
from voxbus.ingest import metrics
from voxbus.ingest.pacer import Pacer
from voxbus.ingest.protocols.base import Adapter, Connection, Opening
from voxbus.ingest.sessions import SessionSpec

log = logging.getLogger(__name__)

_LOGGED_REJECTIONS: Final = 10  # per call; then one line per 1000, with the count
MAX_DTMF: Final = 1000  # digits a call passes on (each is an event on the bus); more are refused


class CarrierAdapter(Adapter):
    provider: ClassVar[str]
    rejections: ClassVar[tuple[str, ...]] = ("call_id", "too_many_dtmf", *CARRIER_MESSAGE_REASONS)

    def __init__(self, opening: Opening) -> None:
        super().__init__(opening)
        self.call_id = ""
        self.pacer: Pacer | None = None  # once the call started
        self._rejections = 0
        self._digits = 0

    @abstractmethod
    def clear_message(self) -> str:
        """The text that makes the carrier drop the audio it buffered for the caller."""

    async def start_call(
        self,
        conn: Connection,
        *,
        call_ids: Iterable[str | None],
        mode: str,
        audio_format: AudioFormat,
        frame_bytes: int,
        frame_seconds: float,
        send: Callable[[bytes], Awaitable[None]],
        frames_per_message: int = 1,
    ) -> str:
        """Open the call's session (in `mode`, or TELEPHONY_MODE when it is none), start its
        pacer, and tell the telephony service (`CallMedia`); the mode it took. The call id is
        the first of `call_ids` within the webhooks' limit, else the session's id."""
        settings = conn.settings
        mode = call_mode(mode)
        if mode not in TELEPHONY_MODES:
            mode = settings.telephony_mode
        session_id = await conn.open(
            SessionSpec(
                user_id=self.provider,
                protocol=self.protocol,
                format=audio_format,
                echo=EchoSettings(enabled="echo" in mode, delay_ms=settings.echo_delay_ms),
                record=mode != "echo",
            )
        )
        self.call_id = self._known_call_id(call_ids) or session_id
        bytes_per_second = frame_bytes / frame_seconds
        self.pacer = Pacer(
            protocol=self.protocol,
            frame_bytes=frame_bytes,
            frame_seconds=frame_seconds,
            send=send,
            max_queued_bytes=int(settings.telephony_max_queued_seconds * bytes_per_second),
            frames_per_message=frames_per_message,
        )
        self.pacer.start(f"pacer-{session_id}")
        log.info(
            "call connected",
            extra={
                "call_id": self.call_id,
                "rate": audio_format.rate,
                "codec": audio_format.codec,
                "mode": mode,
            },
        )
        await conn.publish(
            CallMedia(
                call_id=self.call_id,
                provider=self.provider,
                at=time.time(),
                session_id=session_id,
                rate=audio_format.rate,
                mode=mode,
                codec=audio_format.codec,
            )
        )
        return mode

    def _known_call_id(self, given_ids: Iterable[str | None]) -> str | None:
        """The first call id given within the webhooks' limit (a longer one would make a call
        record `GET /api/calls/{id}` cannot read)."""
        for given in given_ids:
            if given and len(given) <= CALL_ID_MAX:
                return given
            if given:
                self.reject("call_id", f"a call id of {len(given)} characters, more than {CALL_ID_MAX}")
        return None

    async def dtmf(self, conn: Connection, digit: str, duration_ms: int) -> None:
        """The caller pressed a key: to the telephony service; during a prompt, a barge-in."""
        self._digits += 1
        if self._digits > MAX_DTMF:
            self.reject("too_many_dtmf", f"more than {MAX_DTMF} DTMF digits in one call")
            return
        if self.pacer is not None and self.pacer.prompting and self.pacer.clear():
            await conn.send_text(self.clear_message())  # the carrier drops its buffer too
        await conn.publish(
            CallDtmf(
                call_id=self.call_id,
                provider=self.provider,
                at=time.time(),
                session_id=conn.session_id or "",
                digit=digit,
                duration_ms=duration_ms,
            )
        )

    async def on_egress(self, conn: Connection, egress: EgressAudio) -> bool:
        pacer = self.pacer
        if pacer is None:
            return False
        if egress.kind == EgressKind.CLEAR:
            if pacer.clear():  # written by the pacer's task: a carrier that reads nothing
                clear = self.clear_message()
                pacer.mark(lambda: conn.send_text(clear))  # holds up no other socket
            return False
        due = None
        if egress.due is not None:  # wall clock → the pacer's monotonic clock
            due = pacer.clock + (egress.due - time.time())
        pacer.push(egress.audio, prompt=egress.kind == EgressKind.PROMPT, due=due)
        return True

    async def on_disconnect(self, conn: Connection) -> None:
        await conn.finish("call ended", wait=False)  # a carrier never comes back to a socket

    async def on_end(self, conn: Connection) -> None:
        if self.pacer is not None:
            await self.pacer.close()

    def reject(self, reason: str, detail: str) -> None:
        """A message the call cannot use: counted and logged (the first few, then one in 1000)."""
        metrics.REJECTED.labels(self.protocol, reason).inc()
        self._rejections += 1
        if self._rejections <= _LOGGED_REJECTIONS or self._rejections % 1000 == 0:
            log.warning(
                "message refused: %s",
                detail,
                extra={"call_id": self.call_id, "reason": reason, "count": self._rejections},
            )


async def no_ack(ok: bool) -> None:
    return None  # carriers take no acknowledgements; a chunk not stored ends the socket (1011)
