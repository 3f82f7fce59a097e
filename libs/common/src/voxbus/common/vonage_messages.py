"""Every JSON message voxbus and Vonage's Voice API exchange, one typed model each
(docs/protocols/vonage.md): the NCCO actions the answer webhook returns, the webhooks' bodies,
and the media socket's text messages in both directions.

A model's `body()` is its JSON object with Vonage's field names (`content-type`, `eventUrl`,
`from`) and without the fields left unset. Vonage adds fields over time: inbound models take
unknown fields (a connected message carries the call's `headers` flattened into it).
"""

import json
import re
from typing import Annotated, Any, Final, Literal, Self

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel

from voxbus.common.carrier_events import CarrierMessageError, parse_event, validated

VONAGE_RATES: Final = (8000, 16000, 24000)
CALL_ID_MAX: Final = 128  # characters of a call id (Vonage's are 36-character UUIDs)
# a rate of at most 6 digits: int() refuses more than 4300, and no rate voxbus takes has 7
_CONTENT_TYPE = re.compile(r"\s*audio/l16\s*;\s*rate\s*=\s*(\d{1,6})\s*", re.IGNORECASE)


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    def body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def to_wire(self) -> str:
        return json.dumps(self.body())


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="allow", coerce_numbers_to_str=True)

    @classmethod
    def parse(cls, data: Any, *, what: str) -> Self:
        """The message in `data` (decoded JSON), or `CarrierMessageError("invalid")` saying
        which field of `what` is wrong."""
        return validated(cls, data, what=what)


# -- NCCO (the answer webhook's reply) ----------------------------------------------------------


class TalkAction(_Outbound):
    """Vonage speaks `text` to the caller."""

    action: Literal["talk"] = "talk"
    text: str
    language: str | None = None


class WebsocketEndpoint(_Outbound):
    type: Literal["websocket"] = "websocket"
    uri: str
    content_type: str = Field(default="audio/l16;rate=16000", serialization_alias="content-type")
    headers: dict[str, str] | None = None


class SipEndpoint(_Outbound):
    type: Literal["sip"] = "sip"
    uri: str


class PhoneEndpoint(_Outbound):
    type: Literal["phone"] = "phone"
    number: str


class SocketAuthorization(_Outbound):
    """`{"type": "vonage"}`: Vonage signs the media socket's request (`Authorization: Bearer`)."""

    type: Literal["vonage"] = "vonage"


Endpoint = WebsocketEndpoint | SipEndpoint | PhoneEndpoint


class ConnectAction(_Outbound):
    """Vonage connects the call to one endpoint (for voxbus: its media socket)."""

    action: Literal["connect"] = "connect"
    event_url: list[str] | None = Field(default=None, serialization_alias="eventUrl")
    endpoint: list[Annotated[Endpoint, Field(discriminator="type")]]
    authorization: SocketAuthorization | None = None


def content_type(rate: int) -> str:
    return f"audio/l16;rate={rate}"


class Ncco(RootModel[list[Annotated[TalkAction | ConnectAction, Field(discriminator="action")]]]):
    """A Call Control Object: the actions Vonage runs for the call, in order."""

    model_config = ConfigDict(frozen=True)

    def body(self) -> list[dict[str, Any]]:
        """The JSON array Vonage reads: each action's `body()`."""
        return [action.body() for action in self.root]


def ncco(*actions: TalkAction | ConnectAction) -> Ncco:
    return Ncco(list(actions))


def ncco_response(actions: Ncco) -> web.Response:
    return web.json_response(actions.body())


# -- webhooks -----------------------------------------------------------------------------------


class CallWebhook(_Inbound):
    """The answer webhook's query (or JSON body) and the event webhook's body: what voxbus uses
    of them. `uuid` is the call leg's id, the call's id in voxbus."""

    uuid: str = Field(min_length=1, max_length=CALL_ID_MAX)
    conversation_uuid: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    status: str | None = Field(default=None, max_length=64)
    direction: str | None = Field(default=None, max_length=64)
    timestamp: str | None = Field(default=None, max_length=64)


# -- the media socket, Vonage to voxbus ---------------------------------------------------------


class Connected(_Inbound):
    """The socket's first message: the audio format, and the NCCO's `headers` flattened in."""

    event: Literal["websocket:connected"]
    content_type: str = Field(alias="content-type")

    def rate(self) -> int:
        match = _CONTENT_TYPE.fullmatch(self.content_type)
        rate = int(match.group(1)) if match else None
        if rate not in VONAGE_RATES:
            raise CarrierMessageError(
                "content_type",
                f"content-type {self.content_type!r} is not audio/l16 at {', '.join(map(str, VONAGE_RATES))}",
            )
        return rate

    def header(self, name: str) -> str | None:
        extra = self.model_extra or {}
        value = extra.get(name)
        if value is None and isinstance(extra.get("headers"), dict):
            value = extra["headers"].get(name)  # some senders nest them instead of flattening
        return value if isinstance(value, str) and value else None


class Dtmf(_Inbound):
    event: Literal["websocket:dtmf"]
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")
    duration: int = Field(default=0, ge=0, le=60_000)


class Notify(_Inbound):
    """Audio queued before a `notify` action has played."""

    event: Literal["websocket:notify"]
    payload: dict[str, Any] = Field(default_factory=dict)


class Cleared(_Inbound):
    """Vonage emptied its audio buffer after a `clear`."""

    event: Literal["websocket:cleared"]


SocketEvent = Connected | Dtmf | Notify | Cleared
_EVENTS: Final[dict[str, type[SocketEvent]]] = {
    "websocket:connected": Connected,
    "websocket:dtmf": Dtmf,
    "websocket:notify": Notify,
    "websocket:cleared": Cleared,
}


def parse_socket_event(text: str) -> SocketEvent:
    """A text message from the media socket; `CarrierMessageError` (reason `bad_json`,
    `unknown_event` or `invalid`) if it is not one voxbus knows."""
    return parse_event(text, _EVENTS)


# -- the media socket, voxbus to Vonage ---------------------------------------------------------


class ClearAction(_Outbound):
    """Vonage drops the audio it buffered for the caller (barge-in); it answers `websocket:cleared`."""

    action: Literal["clear"] = "clear"
