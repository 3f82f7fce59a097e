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

import math
from typing import ClassVar, Final

from aiohttp import web

from voxbus.common.client_messages import InvalidCarrierRate
from voxbus.common.exotel_auth import refusal
from voxbus.common.records import AudioFormat
from voxbus.common.settings import Settings
from voxbus.common.stream_messages import StartInfo
from voxbus.ingest.protocols.base import Connection, SessionRefused
from voxbus.ingest.protocols.media_stream import FRAME_SECONDS, MediaStreamAdapter, Plan

RATES: Final = (8000, 16000, 24000)
MULAW_FRAME_SECONDS: Final = 0.04  # 320 bytes: a μ-law frame a multiple of Exotel's 320 too
MESSAGE_BYTES: Final = 3200  # Exotel's recommended least per media message, when that much is queued


class ExotelAdapter(MediaStreamAdapter):
    protocol = "exotel"
    provider = "exotel"
    # a message's echoes (200 ms of 8 kHz PCM) reach the pacer before the message is due
    egress_lead: ClassVar[float] = 0.3

    @classmethod
    def refuse_upgrade(cls, settings: Settings, request: web.Request) -> web.Response | None:
        refused = refusal(request, settings)
        return None if refused is None else refused.response()

    async def on_open(self, conn: Connection) -> bool:
        if self._query_rate() not in RATES:
            raise SessionRefused(InvalidCarrierRate(valid_values=list(RATES)), 1008)
        return await super().on_open(conn)

    def _query_rate(self) -> int | None:
        given = self.opening.query.get("sample-rate", "8000")
        # isdigit() alone takes "²", which int() refuses, and so are more than 4300 digits
        return int(given) if given.isascii() and given.isdigit() and len(given) <= 6 else None

    def plan(self, info: StartInfo) -> Plan:
        if info.media_format.mulaw:
            audio_format, frame_seconds = (
                AudioFormat(codec="mulaw", rate=8000, channels=1),
                MULAW_FRAME_SECONDS,
            )
        else:
            rate = info.media_format.sample_rate
            rate = rate if rate in RATES else self._query_rate() or 8000
            audio_format, frame_seconds = AudioFormat(codec="pcm_s16le", rate=rate, channels=1), FRAME_SECONDS
        frame_bytes = Plan(audio_format=audio_format, frame_seconds=frame_seconds).frame_bytes
        return Plan(
            audio_format=audio_format,
            frame_seconds=frame_seconds,
            frames_per_message=math.ceil(MESSAGE_BYTES / frame_bytes),
        )
