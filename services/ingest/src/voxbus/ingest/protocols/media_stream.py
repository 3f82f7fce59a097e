"""What Exotel's Voicebot and Twilio's Media Streams sockets share (their envelope is one, in
snake_case or camelCase: `voxbus.common.stream_messages`): `start` opens the call's session,
`media` carries base64 audio, `dtmf` keys, `mark` is answered once the audio before it has been
sent (with an echo: after the echoes of that audio), `stop` finishes the session; audio for the
caller goes out as `media` messages from the socket's pacer, and `clear` on a barge-in. Each
carrier's adapter says how it refuses an upgrade, which formats it takes and how it frames
outbound audio (`plan`)."""

import asyncio
import logging
from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Final

from aiohttp import web

from voxbus.common.carrier_events import CarrierMessageError
from voxbus.common.client_messages import InvalidCallMode
from voxbus.common.principal import OPERATOR, Principal
from voxbus.common.records import AudioFormat
from voxbus.common.settings import TELEPHONY_MODES, call_mode
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
    StartInfo,
    Stop,
    parse_stream_event,
)
from voxbus.common.tenant_keys import TenantKeys
from voxbus.ingest.pacer import Pacer
from voxbus.ingest.protocols.base import Connection, Opening, SessionRefused
from voxbus.ingest.protocols.carrier import CarrierAdapter, no_ack

log = logging.getLogger(__name__)

FRAME_SECONDS: Final = 0.02


@dataclass(frozen=True, slots=True)
class Plan:
    """How a call's audio travels: its format, and outbound frames of `frame_seconds`, up to
    `frames_per_message` in one `media` message."""

    audio_format: AudioFormat
    frame_seconds: float
    frames_per_message: int = 1

    @property
    def sample_bytes(self) -> int:
        return 1 if self.audio_format.codec == "mulaw" else 2

    @property
    def frame_bytes(self) -> int:
        return int(self.audio_format.rate * self.frame_seconds) * self.sample_bytes


class MediaStreamAdapter(CarrierAdapter):
    camel: ClassVar[bool] = False  # outbound ids spelled camelCase (Twilio)
    rejections = (*CarrierAdapter.rejections, "before_start", "duplicate_start", "frame_size", "binary")

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
    async def authenticate(cls, keys: TenantKeys, request: web.Request) -> Principal | None:
        # `refuse_upgrade` decides, as for the carrier's webhooks; a carrier's calls are the operator's
        return OPERATOR

    @abstractmethod
    def plan(self, info: StartInfo) -> Plan:
        """The call's format and outbound framing, from its `start`."""

    def clear_message(self) -> str:
        return ClearOut(stream_sid=self._stream_sid).to_wire(camel=self.camel)

    async def on_open(self, conn: Connection) -> bool:
        if self._mode and self._mode not in TELEPHONY_MODES:
            raise SessionRefused(InvalidCallMode(valid_values=list(TELEPHONY_MODES)), 1008)
        return True  # the session opens with `start`, which says the format

    async def on_text(self, conn: Connection, text: str) -> None:
        try:
            event = parse_stream_event(text)
        except CarrierMessageError as exc:
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
        plan = self.plan(info)
        audio_format, self._sample_bytes = plan.audio_format, plan.sample_bytes
        stream_sid, camel = self._stream_sid, self.camel

        async def send(audio: bytes) -> None:
            await conn.send_text(MediaOut.of(stream_sid, audio).to_wire(camel=camel))

        mode = await self.start_call(
            conn,
            call_ids=(info.call_sid,),
            mode=info.custom_parameters.get("mode") or self._mode,
            audio_format=audio_format,
            frame_bytes=plan.frame_bytes,
            frame_seconds=plan.frame_seconds,
            send=send,
            frames_per_message=plan.frames_per_message,
        )
        if "echo" in mode:
            self._echo_delay = conn.settings.echo_delay_ms / 1000
        self._bytes_per_second = audio_format.rate * self._sample_bytes

    async def _media(self, conn: Connection, event: Media) -> None:
        try:
            audio = event.audio()
        except CarrierMessageError as exc:
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
        text = MarkOut(stream_sid=self._stream_sid, mark=mark).to_wire(camel=self.camel)

        async def send() -> None:
            await conn.send_text(text)

        if self._echo_delay is None:
            pacer.mark(send)
            return
        # its echo follows the echoes of the audio heard before it, which end `delay` after that
        # audio does (less half a frame: the next message's echoes begin right then)
        after = max(self._heard_until, pacer.clock) + self._echo_delay - FRAME_SECONDS / 2
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
        self.reject("binary", "a binary message (the carrier sends JSON text)")
