"""`/ws/vonage`: a Vonage call's audio (docs/protocols/vonage.md).

Vonage opens the socket the answer webhook's NCCO names (`?call=<uuid>&mode=…`), sends
`websocket:connected` with the audio format and the NCCO's headers, then 20 ms frames of 16-bit
PCM, with `websocket:dtmf`, `websocket:notify` and `websocket:cleared` text messages in between.
The connected message opens the call's session (recorded; echoed when the call's mode says so)
and tells the telephony service (`CallMedia`), which links the call record and plays the
greeting; each DTMF digit goes to it too (`CallDtmf`). A digit pressed during a prompt clears it
(barge-in). Audio for the caller is cut into 20 ms frames and paced at real time (`Pacer`).

When `VONAGE_SIGNATURE_SECRET` is set, the upgrade request must carry Vonage's signed
`Authorization`, or it is refused with HTTP 401; without it the socket is as open as the webhooks
(the telephony service warns at start).
Malformed messages are logged and counted (`voxbus_ingest_rejected_messages_total`), and the
call goes on. Vonage never resumes a socket: when it closes, the session is finished.
"""

import json
import logging
import time
from typing import ClassVar, Final

from aiohttp import web

from voxbus.common.call_events import CallDtmf, CallMedia
from voxbus.common.client_messages import InvalidCallMode
from voxbus.common.records import AudioFormat, EchoSettings, EgressAudio, EgressKind
from voxbus.common.settings import TELEPHONY_MODES, Settings, call_mode
from voxbus.common.vonage_messages import (
    CALL_ID_MAX,
    ClearAction,
    Cleared,
    Connected,
    Dtmf,
    Notify,
    VonageMessageError,
    parse_socket_event,
)
from voxbus.common.vonage_signature import SignatureError, verify
from voxbus.ingest import metrics
from voxbus.ingest.pacer import Pacer
from voxbus.ingest.protocols.base import Adapter, Connection, Opening, SessionRefused
from voxbus.ingest.sessions import SessionSpec

log = logging.getLogger(__name__)

PROVIDER: Final = "vonage"
FRAME_SECONDS: Final = 0.02
SAMPLE_BYTES: Final = 2
_LOGGED_REJECTIONS: Final = 10  # per call; then one line per 1000, with the count
_CLEAR: Final = ClearAction().to_wire()
_LOGGED_PAYLOAD: Final = 256  # characters of a notify payload put in the log
MAX_DTMF: Final = 1000  # digits a call passes on (each is an event on the bus); more are refused


class VonageAdapter(Adapter):
    protocol = "vonage"
    refuses_upgrade: ClassVar[bool] = True  # a bad signature is an HTTP 401, as for the webhooks
    egress_lead: ClassVar[float] = 0.06  # echoes reach the pacer early, so they leave on time

    def __init__(self, opening: Opening) -> None:
        super().__init__(opening)
        self._call_id = opening.query.get("call", "")
        self._mode = call_mode(opening.query.get("mode", ""))
        self._pacer: Pacer | None = None  # once connected
        self._frame_bytes = 0
        self._rejections = 0
        self._digits = 0

    @classmethod
    def authenticate(cls, settings: Settings, request: web.Request) -> bool:
        """Vonage's signature when a secret is set; otherwise open, as the webhooks are (Vonage
        cannot present voxbus's API key, and an answer webhook that handed it out would give
        it to anyone who asks)."""
        secret = settings.vonage_signature_secret
        if secret is None:
            return True
        try:
            verify(secret, request.headers.get("Authorization"), None)
        except SignatureError as exc:
            log.warning("media socket refused: %s", exc, extra={"protocol": cls.protocol})
            return False
        return True

    async def on_open(self, conn: Connection) -> bool:
        if self._mode and self._mode not in TELEPHONY_MODES:
            raise SessionRefused(InvalidCallMode(valid_values=list(TELEPHONY_MODES)), 1008)
        return True  # the session opens with the connected message, which says the rate

    async def on_text(self, conn: Connection, text: str) -> None:
        try:
            event = parse_socket_event(text)
        except VonageMessageError as exc:
            self._reject(exc.reason, str(exc))
            return
        if isinstance(event, Connected):
            await self._connected(conn, event)
        elif self._pacer is None:
            self._reject("before_connected", f"{event.event} before websocket:connected")
        elif isinstance(event, Dtmf):
            await self._dtmf(conn, event)
        elif isinstance(event, Notify):
            payload = json.dumps(event.payload)
            log.info(
                "notify: queued audio played",
                extra={"payload": payload[:_LOGGED_PAYLOAD], "size": len(payload)},
            )
        elif isinstance(event, Cleared):
            log.info("the carrier cleared its audio buffer")

    async def _connected(self, conn: Connection, event: Connected) -> None:
        if self._pacer is not None:
            self._reject("duplicate_connected", "a second websocket:connected")
            return
        try:
            rate = event.rate()
        except VonageMessageError as exc:
            self._reject(exc.reason, str(exc))
            return
        settings = conn.settings
        mode = self._mode or call_mode(event.header("mode") or "") or settings.telephony_mode
        if mode not in TELEPHONY_MODES:
            mode = settings.telephony_mode
        session_id = await conn.open(
            SessionSpec(
                user_id=PROVIDER,
                protocol=self.protocol,
                format=AudioFormat(codec="pcm_s16le", rate=rate, channels=1),
                echo=EchoSettings(enabled="echo" in mode, delay_ms=settings.echo_delay_ms),
                record=mode != "echo",
            )
        )
        self._call_id = self._known_call_id(event) or session_id
        self._frame_bytes = int(rate * FRAME_SECONDS) * SAMPLE_BYTES
        self._pacer = Pacer(
            protocol=self.protocol,
            frame_bytes=self._frame_bytes,
            frame_seconds=FRAME_SECONDS,
            send=conn.send_binary,
            max_queued_bytes=int(settings.telephony_max_queued_seconds * rate) * SAMPLE_BYTES,
        )
        self._pacer.start(f"pacer-{session_id}")
        log.info("call connected", extra={"call_id": self._call_id, "rate": rate, "mode": mode})
        await conn.publish(
            CallMedia(
                call_id=self._call_id,
                provider=PROVIDER,
                at=time.time(),
                session_id=session_id,
                rate=rate,
                mode=mode,
            )
        )

    def _known_call_id(self, event: Connected) -> str | None:
        """The call id the query or the connected message gives, held to the webhooks' limit (a
        longer one would make a call record `GET /api/calls/{id}` cannot read)."""
        for given in (self._call_id, event.header("call_uuid"), event.header("uuid")):
            if given and len(given) <= CALL_ID_MAX:
                return given
            if given:
                self._reject("call_id", f"a call id of {len(given)} characters, more than {CALL_ID_MAX}")
        return None

    async def _dtmf(self, conn: Connection, event: Dtmf) -> None:
        self._digits += 1
        if self._digits > MAX_DTMF:
            self._reject("too_many_dtmf", f"more than {MAX_DTMF} DTMF digits in one call")
            return
        if self._pacer is not None and self._pacer.prompting and self._pacer.clear():
            await conn.send_text(_CLEAR)  # barge-in: Vonage drops its buffer too
        await conn.publish(
            CallDtmf(
                call_id=self._call_id,
                provider=PROVIDER,
                at=time.time(),
                session_id=conn.session_id or "",
                digit=event.digit,
                duration_ms=event.duration,
            )
        )

    async def on_binary(self, conn: Connection, data: bytes) -> None:
        if self._pacer is None:
            self._reject("before_connected", "audio before websocket:connected")
            return
        if conn.finished:
            return
        if len(data) != self._frame_bytes:
            self._reject("frame_size", f"a frame of {len(data)} bytes, not {self._frame_bytes}")
            if len(data) % SAMPLE_BYTES:
                return  # half a sample would shift every sample after it
        await conn.audio(data, _no_ack)

    async def on_egress(self, conn: Connection, egress: EgressAudio) -> bool:
        if self._pacer is None:
            return False
        if egress.kind == EgressKind.CLEAR:
            if self._pacer.clear():  # written by the pacer's task: a carrier that reads nothing
                self._pacer.mark(lambda: conn.send_text(_CLEAR))  # holds up no other socket
            return False
        due = None
        if egress.due is not None:  # wall clock → the pacer's monotonic clock
            due = self._pacer.clock + (egress.due - time.time())
        self._pacer.push(egress.audio, prompt=egress.kind == EgressKind.PROMPT, due=due)
        return True

    async def on_disconnect(self, conn: Connection) -> None:
        await conn.finish("call ended", wait=False)  # Vonage never comes back to a socket

    async def on_end(self, conn: Connection) -> None:
        if self._pacer is not None:
            await self._pacer.close()

    def _reject(self, reason: str, detail: str) -> None:
        metrics.REJECTED.labels(self.protocol, reason).inc()
        self._rejections += 1
        if self._rejections <= _LOGGED_REJECTIONS or self._rejections % 1000 == 0:
            log.warning(
                "message refused: %s",
                detail,
                extra={"call_id": self._call_id, "reason": reason, "count": self._rejections},
            )


async def _no_ack(ok: bool) -> None:
    return None  # Vonage takes no acknowledgements; a chunk not stored ends the socket (1011)
