"""The media-stream envelope Exotel's Voicebot and Twilio's Media Streams share, one typed model
per message (Exotel writes it in snake_case with PCM, Twilio in camelCase with μ-law; both send
numbers as strings): `connected`, `start`, `media`, `dtmf`, `mark`, `stop` in, and `media`,
`mark`, `clear` out.

Inbound models take either spelling of every id (`stream_sid` / `streamSid`), numbers as numbers
or strings, and fields a carrier adds. `parse_stream_event` names what is wrong with a message in
a short `reason` (for metrics) and a text (for logs).
"""

import base64
import binascii
import json
from typing import Any, Final, Literal, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from voxbus.common.carrier_events import CarrierMessageError, parse_event

MAX_PAYLOAD_BYTES: Final = 100 * 1024  # decoded audio in one media message (Exotel's outbound limit)


def _either(snake: str, camel: str) -> Any:
    return Field(validation_alias=AliasChoices(snake, camel))


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", coerce_numbers_to_str=True)


class MediaFormat(_Inbound):
    encoding: str = "audio/x-raw"
    sample_rate: int = Field(default=8000, validation_alias=AliasChoices("sample_rate", "sampleRate"))

    @property
    def mulaw(self) -> bool:
        return "mulaw" in self.encoding.lower()


class StartInfo(_Inbound):
    stream_sid: str = _either("stream_sid", "streamSid")
    call_sid: str = Field(max_length=128, validation_alias=AliasChoices("call_sid", "callSid"))
    account_sid: str | None = Field(default=None, validation_alias=AliasChoices("account_sid", "accountSid"))
    from_: str | None = Field(default=None, max_length=64, validation_alias=AliasChoices("from", "from_"))
    to: str | None = Field(default=None, max_length=64)
    custom_parameters: dict[str, str] = Field(
        default_factory=dict, validation_alias=AliasChoices("custom_parameters", "customParameters")
    )
    media_format: MediaFormat = Field(
        default_factory=MediaFormat, validation_alias=AliasChoices("media_format", "mediaFormat")
    )


class Connected(_Inbound):
    event: Literal["connected"]


class Start(_Inbound):
    event: Literal["start"]
    start: StartInfo


class MediaPayload(_Inbound):
    payload: str
    chunk: int | None = None
    timestamp: int | None = None


class Media(_Inbound):
    event: Literal["media"]
    media: MediaPayload

    def audio(self) -> bytes:
        """The payload's bytes; `CarrierMessageError`: "bad_base64" when it is not base64,
        "too_large" when it decodes to more than `MAX_PAYLOAD_BYTES`."""
        text = self.media.payload
        too_large = CarrierMessageError("too_large", f"a media payload over {MAX_PAYLOAD_BYTES} bytes")
        if len(text) > (MAX_PAYLOAD_BYTES * 4) // 3 + 4:  # refused before it is decoded
            raise too_large
        try:
            audio = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CarrierMessageError("bad_base64", f"media payload is not base64: {exc}") from None
        if len(audio) > MAX_PAYLOAD_BYTES:  # the few bytes base64's length leaves unsure
            raise too_large
        return audio


class DtmfInfo(_Inbound):
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")
    duration: int = Field(default=0, ge=0, le=60_000)


class Dtmf(_Inbound):
    event: Literal["dtmf"]
    dtmf: DtmfInfo


class MarkInfo(_Inbound):
    name: str = Field(max_length=256)


class Mark(_Inbound):
    """Inbound: the audio sent before the mark of this name has played."""

    event: Literal["mark"]
    mark: MarkInfo


class StopInfo(_Inbound):
    reason: str | None = Field(default=None, max_length=64)


class Stop(_Inbound):
    event: Literal["stop"]
    stop: StopInfo = Field(default_factory=StopInfo)


StreamEvent = Connected | Start | Media | Dtmf | Mark | Stop
_EVENTS: Final[dict[str, type[StreamEvent]]] = {
    "connected": Connected,
    "start": Start,
    "media": Media,
    "dtmf": Dtmf,
    "mark": Mark,
    "stop": Stop,
}


def parse_stream_event(text: str) -> StreamEvent:
    """A text message of the stream; `CarrierMessageError` (reason `bad_json`, `unknown_event`
    or `invalid`) when it is not one voxbus knows."""
    return parse_event(text, _EVENTS)


# -- voxbus to the carrier ------------------------------------------------------------------------


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_wire(self, *, camel: bool) -> str:
        """The text message, ids spelled as the carrier spells them (Twilio: camelCase)."""
        body = self.model_dump(exclude_none=True)
        if camel and "stream_sid" in body:
            body = {"streamSid" if name == "stream_sid" else name: value for name, value in body.items()}
        return json.dumps(body)


class OutboundPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    payload: str


class MediaOut(_Outbound):
    event: Literal["media"] = "media"
    stream_sid: str
    media: OutboundPayload

    @classmethod
    def of(cls, stream_sid: str, audio: bytes) -> Self:
        return cls(
            stream_sid=stream_sid, media=OutboundPayload(payload=base64.b64encode(audio).decode("ascii"))
        )


class MarkOut(_Outbound):
    event: Literal["mark"] = "mark"
    stream_sid: str
    mark: MarkInfo


class ClearOut(_Outbound):
    """The carrier drops the audio it buffered for the caller (barge-in)."""

    event: Literal["clear"] = "clear"
    stream_sid: str
