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
from typing import ClassVar, Final

from aiohttp import web

from voxbus.common.carrier_events import CarrierMessageError
from voxbus.common.client_messages import InvalidCallMode
from voxbus.common.http_bodies import ErrorBody
from voxbus.common.principal import OPERATOR, Principal
from voxbus.common.records import AudioFormat
from voxbus.common.settings import TELEPHONY_MODES, Settings, call_mode
from voxbus.common.tenant_keys import TenantKeys
from voxbus.common.vonage_messages import (
    ClearAction,
    Cleared,
    Connected,
    Dtmf,
    Notify,
    parse_socket_event,
)
from voxbus.common.vonage_signature import SignatureError, verify
from voxbus.ingest.protocols.base import Connection, Opening, SessionRefused
from voxbus.ingest.protocols.carrier import CarrierAdapter, no_ack

log = logging.getLogger(__name__)

FRAME_SECONDS: Final = 0.02
SAMPLE_BYTES: Final = 2
_CLEAR: Final = ClearAction().to_wire()
_LOGGED_PAYLOAD: Final = 256  # characters of a notify payload put in the log


class VonageAdapter(CarrierAdapter):
    protocol = "vonage"
    provider = "vonage"
    egress_lead: ClassVar[float] = 0.06  # echoes reach the pacer early, so they leave on time
    rejections = (*CarrierAdapter.rejections, "before_connected", "duplicate_connected", "frame_size")

    def __init__(self, opening: Opening) -> None:
        super().__init__(opening)
        self._mode = call_mode(opening.query.get("mode", ""))
        self._frame_bytes = 0

    @classmethod
    def refuse_upgrade(cls, settings: Settings, request: web.Request) -> web.Response | None:
        """Vonage's signature when a secret is set (401 without it, as for the webhooks);
        otherwise open, as the webhooks are (Vonage cannot present voxbus's API key, and an
        answer webhook that handed it out would give it to anyone who asks)."""
        secret = settings.vonage_signature_secret
        if secret is None:
            return None
        try:
            verify(secret, request.headers.get("Authorization"), None)
        except SignatureError as exc:
            log.warning("media socket refused: %s", exc, extra={"protocol": cls.protocol})
            return ErrorBody(error="Invalid signature").response(401)
        return None

    @classmethod
    async def authenticate(cls, keys: TenantKeys, request: web.Request) -> Principal | None:
        # `refuse_upgrade` decides; a carrier's calls are the operator's
        return OPERATOR

    def clear_message(self) -> str:
        return _CLEAR

    async def on_open(self, conn: Connection) -> bool:
        if self._mode and self._mode not in TELEPHONY_MODES:
            raise SessionRefused(InvalidCallMode(valid_values=list(TELEPHONY_MODES)), 1008)
        return True  # the session opens with the connected message, which says the rate

    async def on_text(self, conn: Connection, text: str) -> None:
        try:
            event = parse_socket_event(text)
        except CarrierMessageError as exc:
            self.reject(exc.reason, str(exc))
            return
        if isinstance(event, Connected):
            await self._connected(conn, event)
        elif self.pacer is None:
            self.reject("before_connected", f"{event.event} before websocket:connected")
        elif isinstance(event, Dtmf):
            await self.dtmf(conn, event.digit, event.duration)
        elif isinstance(event, Notify):
            payload = json.dumps(event.payload)
            log.info(
                "notify: queued audio played",
                extra={"payload": payload[:_LOGGED_PAYLOAD], "size": len(payload)},
            )
        elif isinstance(event, Cleared):
            log.info("the carrier cleared its audio buffer")

    async def _connected(self, conn: Connection, event: Connected) -> None:
        if self.pacer is not None:
            self.reject("duplicate_connected", "a second websocket:connected")
            return
        try:
            rate = event.rate()
        except CarrierMessageError as exc:
            self.reject(exc.reason, str(exc))
            return
        self._frame_bytes = int(rate * FRAME_SECONDS) * SAMPLE_BYTES
        await self.start_call(
            conn,
            call_ids=(self.opening.query.get("call"), event.header("call_uuid"), event.header("uuid")),
            mode=self._mode or event.header("mode") or "",
            audio_format=AudioFormat(codec="pcm_s16le", rate=rate, channels=1),
            frame_bytes=self._frame_bytes,
            frame_seconds=FRAME_SECONDS,
            send=conn.send_binary,
        )

    async def on_binary(self, conn: Connection, data: bytes) -> None:
        if self.pacer is None:
            self.reject("before_connected", "audio before websocket:connected")
            return
        if conn.finished:
            return
        if len(data) != self._frame_bytes:
            self.reject("frame_size", f"a frame of {len(data)} bytes, not {self._frame_bytes}")
            if len(data) % SAMPLE_BYTES:
                return  # half a sample would shift every sample after it
        await conn.audio(data, no_ack)
