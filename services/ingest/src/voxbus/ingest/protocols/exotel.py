"""`/ws/exotel`: an Exotel Voicebot call's audio (docs/protocols/exotel.md).

Exotel opens the socket the applet names (`?sample-rate=8000|16000|24000`, default 8000), sends
`connected`, then `start` (the call, its custom parameters, the media format), `media` (base64
audio, 16-bit PCM or, when `start` says so, μ-law at 8 kHz) roughly every 100 ms, `dtmf`, `mark`,
and at the end `stop`. `start` opens the call's session in the call's mode (the custom parameter
`mode`, or `?mode=`, or TELEPHONY_MODE) and tells the telephony service, which links the call
record and plays the greeting. Audio for the caller goes out as `media` messages paced at real
time, in multiples of 320 bytes and 3,200 bytes or more when that much is queued (Exotel's rule);
a `mark` comes back once the audio queued before it was sent; a digit during a prompt, or a clear
over the bus, sends `clear`. `stop` finishes the session.

The upgrade request is refused (403, 401) when `EXOTEL_ALLOWED_IPS` or `EXOTEL_API_KEY` /
`EXOTEL_API_TOKEN` say it is not Exotel's (`exotel_auth`). Malformed messages are logged and
counted, and the call goes on.
"""

import asyncio
import logging
import math
from typing import ClassVar, Final

from aiohttp import web

from voxbus.common.client_messages import InvalidCallMode, InvalidCarrierRate
from voxbus.common.exotel_auth import refusal
from voxbus.common.records import AudioFormat
from voxbus.common.settings import TELEPHONY_MODES, Settings, call_mode
from voxbus.common.stream_messages import (
    ClearOut,
    Connected,
    Dtmf,
    Mark,
    MarkInfo,
    MarkOut,
    Media,
    MediaOut,
    Start,
    Stop,
    StreamMessageError,
    parse_stream_event,
)
from voxbus.ingest.pacer import Pacer
from voxbus.ingest.protocols.base import Connection, Opening, SessionRefused
from voxbus.ingest.protocols.carrier import CarrierAdapter, no_ack

log = logging.getLogger(__name__)

RATES: Final = (8000, 16000, 24000)
PCM_FRAME_SECONDS: Final = 0.02
MULAW_FRAME_SECONDS: Final = 0.04  # 320 bytes: a μ-law frame a multiple of Exotel's 320 too
MESSAGE_BYTES: Final = 3200  # Exotel's recommended least per media message, when that much is queued


class ExotelAdapter(CarrierAdapter):
    protocol = "exotel"
    provider = "exotel"
    # a message's echoes (200 ms of 8 kHz PCM) reach the pacer before the message is due
    egress_lead: ClassVar[float] = 0.3

    def __init__(self, opening: Opening) -> None:
        super().__init__(opening)
        self._mode = call_mode(opening.query.get("mode", ""))
        self._stream_sid = ""
        self._sample_bytes = 2
        self._echo_delay: float | None = None  # seconds, once started in a mode that echoes
        self._bytes_per_second = 16000
        self._heard_until = 0.0  # on the pacer's clock: when the audio received so far ends
        self._timers: list[asyncio.TimerHandle] = []  # marks waiting for their echoes

    @classmethod
    def refuse_upgrade(cls, settings: Settings, request: web.Request) -> web.Response | None:
        refused = refusal(request, settings)
        return None if refused is None else refused.response()

    @classmethod
    def authenticate(cls, settings: Settings, request: web.Request) -> bool:
        return True  # `refuse_upgrade` decides, as for Exotel's callbacks

    def clear_message(self) -> str:
        return ClearOut(stream_sid=self._stream_sid).to_wire(camel=False)

    async def on_open(self, conn: Connection) -> bool:
        if self._mode and self._mode not in TELEPHONY_MODES:
            raise SessionRefused(InvalidCallMode(valid_values=list(TELEPHONY_MODES)), 1008)
        if self._query_rate() not in RATES:
            raise SessionRefused(InvalidCarrierRate(valid_values=list(RATES)), 1008)
        return True  # the session opens with `start`, which says the format

    def _query_rate(self) -> int | None:
        given = self.opening.query.get("sample-rate", "8000")
        return int(given) if given.isdigit() else None

    async def on_text(self, conn: Connection, text: str) -> None:
        try:
            event = parse_stream_event(text)
        except StreamMessageError as exc:
            self.reject(exc.reason, str(exc))
            return
        if isinstance(event, Connected):
            return
        if isinstance(event, Start):
            await self._start(conn, event)
        elif self.pacer is None:
            self.reject("before_start", f"{event.event} before start")
        elif isinstance(event, Media):
            await self._media(conn, event)
        elif isinstance(event, Dtmf):
            await self.dtmf(conn, event.dtmf.digit, event.dtmf.duration)
        elif isinstance(event, Mark):
            self._mark(conn, self.pacer, event.mark)
        elif isinstance(event, Stop):
            await conn.finish(f"call ended: {event.stop.reason or 'stop'}", wait=False)
            await conn.close(1000, "call ended")

    async def _start(self, conn: Connection, event: Start) -> None:
        if self.pacer is not None:
            self.reject("duplicate_start", "a second start")
            return
        info = event.start
        self._stream_sid = info.stream_sid
        if info.media_format.mulaw:
            audio_format = AudioFormat(codec="mulaw", rate=8000, channels=1)
            self._sample_bytes, frame_seconds = 1, MULAW_FRAME_SECONDS
        else:
            rate = info.media_format.sample_rate
            audio_format = AudioFormat(
                codec="pcm_s16le", rate=rate if rate in RATES else self._query_rate() or 8000, channels=1
            )
            self._sample_bytes, frame_seconds = 2, PCM_FRAME_SECONDS
        frame_bytes = int(audio_format.rate * frame_seconds) * self._sample_bytes
        stream_sid = self._stream_sid

        async def send(audio: bytes) -> None:
            await conn.send_text(MediaOut.of(stream_sid, audio).to_wire(camel=False))

        mode = await self.start_call(
            conn,
            call_ids=(info.call_sid,),
            mode=info.custom_parameters.get("mode") or self._mode,
            audio_format=audio_format,
            frame_bytes=frame_bytes,
            frame_seconds=frame_seconds,
            send=send,
            frames_per_message=math.ceil(MESSAGE_BYTES / frame_bytes),
        )
        if "echo" in mode:
            self._echo_delay = conn.settings.echo_delay_ms / 1000
        self._bytes_per_second = audio_format.rate * self._sample_bytes

    async def _media(self, conn: Connection, event: Media) -> None:
        try:
            audio = event.audio()
        except StreamMessageError as exc:
            self.reject(exc.reason, str(exc))
            return
        if conn.finished or not audio:
            return
        if len(audio) % self._sample_bytes:
            self.reject("frame_size", f"a payload of {len(audio)} bytes, not whole 16-bit samples")
            return
        if self.pacer is not None:  # a media message carries audio that plays for its length
            now = self.pacer.clock
            self._heard_until = max(self._heard_until, now) + len(audio) / self._bytes_per_second
        await conn.audio(audio, no_ack)

    def _mark(self, conn: Connection, pacer: Pacer, mark: MarkInfo) -> None:
        """Back to Exotel once the audio before it was sent: the audio queued now, or, when the
        call echoes, the echoes of the audio that came before it (queued by their due times:
        the mark joins the queue when they have all reached it)."""
        text = MarkOut(stream_sid=self._stream_sid, mark=mark).to_wire(camel=False)

        async def send() -> None:
            await conn.send_text(text)

        if self._echo_delay is None:
            pacer.mark(send)
            return
        # its echo follows the echoes of the audio heard before it, which end `delay` after that
        # audio does (less half a frame: the next message's echoes begin right then)
        after = max(self._heard_until, pacer.clock) + self._echo_delay - PCM_FRAME_SECONDS / 2
        # they reach the pacer `egress_lead` before they are due: the mark joins once they have,
        # placed by due time among the frames due later
        wait = max(0.0, after - self.egress_lead / 2 - pacer.clock)
        handle = asyncio.get_running_loop().call_later(wait, lambda: pacer.mark(send, after=after))
        self._timers = [timer for timer in self._timers if not timer.cancelled()] + [handle]

    async def on_end(self, conn: Connection) -> None:
        for timer in self._timers:
            timer.cancel()
        await super().on_end(conn)

    async def on_binary(self, conn: Connection, data: bytes) -> None:
        self.reject("binary", "a binary message (Exotel sends JSON text)")
