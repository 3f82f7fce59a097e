"""`/ws/twilio`: a Twilio Media Streams call's audio (docs/protocols/twilio.md).

The envelope is Exotel's (`media_stream`) in camelCase: `connected`, `start` (the call, its
`customParameters`, μ-law at 8 kHz), `media` (base64 μ-law, 20 ms each), `dtmf`, `mark`, `stop`.
Audio for the caller goes back as `media` messages of exactly one 160-byte (20 ms) μ-law frame,
paced at real time; marks and clears as Exotel's. When `TWILIO_AUTH_TOKEN` is set the upgrade
request must carry Twilio's `X-Twilio-Signature` of the socket's URL, or it is refused with 401.
"""

from typing import ClassVar, Final

from aiohttp import web

from voxbus.common.http_bodies import ErrorBody
from voxbus.common.records import AudioFormat
from voxbus.common.settings import Settings
from voxbus.common.stream_messages import StartInfo
from voxbus.common.twilio_signature import signed
from voxbus.ingest.protocols.media_stream import FRAME_SECONDS, MediaStreamAdapter, Plan

MULAW_8K: Final = AudioFormat(codec="mulaw", rate=8000, channels=1)


class TwilioAdapter(MediaStreamAdapter):
    protocol = "twilio"
    provider = "twilio"
    camel: ClassVar[bool] = True
    egress_lead: ClassVar[float] = 0.06  # one 20 ms frame per message, as Vonage's

    @classmethod
    def refuse_upgrade(cls, settings: Settings, request: web.Request) -> web.Response | None:
        if signed(settings, request, {}, socket=True):
            return None
        return ErrorBody(error="Invalid signature").response(401)

    def plan(self, info: StartInfo) -> Plan:
        return Plan(audio_format=MULAW_8K, frame_seconds=FRAME_SECONDS)
