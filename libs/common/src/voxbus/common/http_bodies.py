"""Every JSON body of voxbus's HTTP endpoints, and the query parameters they take, one typed model
each (the WebSocket messages are `client_messages`; the carriers' webhooks are theirs, in
`vonage_messages` and `exotel_callbacks`).

The handlers answer with these models (`HttpBody.response`), and `/openapi.json` is generated from
them (`runtime.api_docs`): their docstrings, field descriptions and examples are the reference a
client reads. The query models (`…Query`) are what the document lists as each endpoint's query
parameters: the handlers read their queries by hand, for the exact refusals docs/api.md lists, and
`tests/integration/test_api_docs.py` holds the two together (schemathesis sends what the models
allow and every operation must answer without a server error).
"""

from typing import Annotated, Any, ClassVar, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxbus.common.client_messages import (
    SESSION_CHANNELS,
    SESSION_FORMATS,
    DurationSeconds,
    FilePath,
    SessionId,
)
from voxbus.common.constants import KEY_SCOPES, SAMPLE_RATES, KeyScope, SessionStatus
from voxbus.common.settings import TelephonyMode

MAX_PAGE: Final = 100  # items a listing page holds at most (`listing.Page`)

_CALL_ID_EXAMPLE = "63f61863-4a51-4f6b-86e1-46edebcf9356"

Timestamp = Annotated[float, Field(description="Unix time, seconds.", examples=[1764662400.25])]
NextCursor = Annotated[
    str | None,
    Field(
        description="Pass as `cursor` for the next page; null when nothing is left. A page may "
        "hold fewer items than `limit` (a filter that matches few stops after 1,000 looked at) "
        "and still have a next one.",
        examples=["1764662400.25"],
    ),
]


class HttpBody(BaseModel):
    """A JSON body an endpoint answers with."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        populate_by_name=True,
        json_schema_serialization_defaults_required=True,
    )
    omit_none: ClassVar[bool] = False  # True: a field that is None is left out of the body

    def body(self) -> dict[str, Any]:
        """The JSON object, fields in the order they are declared."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=self.omit_none)

    def response(self, status: int = 200) -> web.Response:
        return web.json_response(self.body(), status=status)


class SparseBody(HttpBody):
    """A body whose fields that are None are left out (an error names only what applies)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)
    omit_none = True


# -- errors --------------------------------------------------------------------------------------


class ErrorBody(SparseBody):
    """Every refusal and failure: `error` says what, the other fields (each only where it
    applies) what it was about and what would have been accepted."""

    error: Annotated[
        str, Field(description="What went wrong, in a sentence.", examples=["Session not found"])
    ]
    session_id: str | None = Field(default=None, description="The session the request named.")
    call_id: str | None = Field(default=None, description="The call the request named.")
    valid_values: list[str] | None = Field(default=None, description="The values the parameter takes.")
    valid_range: list[int] | None = Field(default=None, description="The smallest and largest value taken.")
    size: int | None = Field(default=None, description="The file's size in bytes (416 only).")
    segments: int | None = Field(default=None, description="How many segments the session has.")
    endpoint: str | None = Field(default=None, description="The endpoint given (its first 200 characters).")
    detail: str | None = Field(default=None, description="Which field was wrong, and why.")
    failed: dict[str, str] | None = Field(default=None, description="Work that stopped, with the reason.")
    scope: KeyScope | None = Field(default=None, description="The scope a tenant key lacks (403 only).")


# -- admin ---------------------------------------------------------------------------------------


class ServiceInfo(HttpBody):
    """What this process is and serves."""

    name: Literal["voxbus"] = "voxbus"
    message: Literal["voxbus real-time audio backend"] = "voxbus real-time audio backend"
    status: Literal["running"] = "running"
    version: Annotated[str, Field(examples=["0.1.0"])]
    services: Annotated[
        list[str], Field(description="The services this process runs.", examples=[["ingest"]])
    ]
    websocket_endpoint: Literal["/ws/audio"] = "/ws/audio"
    endpoints: Annotated[list[str], Field(description="Every path this process serves.")]


class Health(SparseBody):
    """Liveness: `healthy` while the process can do its work."""

    status: Literal["healthy", "unhealthy"]
    service: Literal["voxbus"] = "voxbus"
    version: Annotated[str, Field(examples=["0.1.0"])]
    failed: dict[str, str] | None = Field(
        default=None, description="Unhealthy only: the work that stopped for good, with the reason."
    )


class ReadinessReport(HttpBody):
    """Readiness: `ready` when every check passes (the bus, the store, each consumer and task)."""

    status: Literal["ready", "not_ready"]
    checks: Annotated[
        dict[str, str],
        Field(description='Each check: "ok", or why it failed.', examples=[{"bus": "ok", "store": "ok"}]),
    ]


# -- sessions ------------------------------------------------------------------------------------


class SessionInfo(HttpBody):
    """A session: its format, progress and recording."""

    session_id: SessionId
    user_id: Annotated[str, Field(description="The client's `user_id`.", examples=["anonymous"])]
    tenant: Annotated[
        str, Field(description="The tenant whose key opened it; empty for the operator's.", examples=[""])
    ] = ""
    status: SessionStatus
    protocol: Annotated[
        str, Field(description="The endpoint's protocol: session, echo, delayed_echo, wyoming, vonage, …")
    ]
    sample_rate: Annotated[int, Field(ge=0, description="Hz; 0 until known.", examples=[16000])]
    channels: Annotated[int, Field(ge=0, description="0 until known.", examples=[1])]
    format: Annotated[str, Field(description="The format the client sends.", examples=["pcm"])]
    created_at: Timestamp
    updated_at: Timestamp
    total_chunks: Annotated[int, Field(ge=0, description="Binary chunks durable on the bus.")]
    bytes_received: Annotated[int, Field(ge=0)]
    duration_seconds: DurationSeconds
    file_path: FilePath
    segments: Annotated[
        list[str],
        Field(
            description="The 30-second segments' files, relative to the audio storage directory.",
            examples=[["5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e/segment_0000.wav"]],
        ),
    ]
    close_reason: str | None = Field(description="Why the session closed.", examples=["client closed"])
    error: str | None = Field(description="Why the session failed (status `error`).")


class SessionList(HttpBody):
    """A page of sessions, newest first."""

    sessions: list[SessionInfo]
    count: Annotated[int, Field(ge=0, description="Sessions in this page.")]
    next_cursor: NextCursor


class SessionCloseResult(HttpBody):
    """The session is closed and its recording complete."""

    success: Literal[True] = True
    session_id: SessionId
    final_info: SessionInfo


class SessionListQuery(HttpBody):
    limit: int = Field(default=20, ge=1, le=MAX_PAGE, description="Sessions per page.")
    cursor: float | None = Field(default=None, description="The `next_cursor` of the page before.")
    status: SessionStatus | None = Field(default=None, description="Only sessions with this status.")
    user_id: str | None = Field(default=None, description="Only this user's sessions.")


# -- tenant keys ---------------------------------------------------------------------------------

TENANT_PATTERN: Final = "^[a-z0-9][a-z0-9_-]{0,62}$"


class KeyRequest(HttpBody):
    """A new tenant key: whose, what it may do, and a note to recognise it by."""

    model_config = ConfigDict(extra="forbid")

    tenant: Annotated[
        str,
        Field(
            pattern=TENANT_PATTERN,
            description="The tenant: 1-63 lowercase letters, digits, `-` or `_`, starting with a letter "
            "or digit.",
            examples=["acme"],
        ),
    ]
    scopes: list[KeyScope] = Field(
        default_factory=lambda: list(KEY_SCOPES),
        min_length=1,
        description="`stream`: open audio sockets and close its sessions; `read`: list and download "
        "its sessions. Default: both.",
    )
    name: str = Field(
        default="",
        max_length=200,
        pattern=r"^[^\x00-\x1f\x7f\u202a-\u202e\u2066-\u2069]*$",  # printed by `voxbus keys list`
        description="A note to recognise the key by (no control characters).",
    )

    @classmethod
    def parse(cls, body: bytes) -> "KeyRequest | ErrorBody":
        """`POST /api/keys`'s body (empty: `{}`), or the 422 error naming the field at fault."""
        try:
            return cls.model_validate_json(body or b"{}")
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "body"
            return ErrorBody(error="Invalid key request", detail=f"{where}: {error['msg']}")


class KeyInfo(HttpBody):
    """A tenant key as listed: never the key itself."""

    key_id: Annotated[
        str, Field(description="The key's public id (its second part).", examples=["3f9a0c1b7d2e"])
    ]
    tenant: str
    scopes: list[KeyScope]
    name: str
    created_at: Timestamp
    revoked_at: Timestamp | None = Field(default=None, description="When it was revoked; null while valid.")


class KeyCreated(KeyInfo):
    key: Annotated[
        str, Field(description="The key, shown this once: voxbus keeps only its SHA-256.", examples=["vbk_…"])
    ]


class KeyList(HttpBody):
    keys: list[KeyInfo]
    count: int


# -- calls ---------------------------------------------------------------------------------------


class CallStatusEntry(HttpBody):
    carrier_time: Annotated[str, Field(description="The carrier's timestamp, else the time it arrived.")]
    status: Annotated[str, Field(description="As the carrier named it.", examples=["answered"])]
    at: Timestamp


class DtmfPress(HttpBody):
    at: Timestamp
    digit: Annotated[str, Field(examples=["5"])]
    duration_ms: int | None = Field(description="How long it was held, when the carrier says.")


class CallRecording(HttpBody):
    """The recording of the call's session (None for a call in `echo` mode, which keeps none)."""

    status: SessionStatus
    file_path: FilePath
    duration_seconds: DurationSeconds
    segments: list[str]


class CallRecord(HttpBody):
    """One carrier call: its parties, mode, status history, keypresses, and recording."""

    call_id: Annotated[
        str, Field(description="The carrier's id of the call (leg).", examples=[_CALL_ID_EXAMPLE])
    ]
    provider: Literal["vonage", "exotel", "twilio"]
    from_: str | None = Field(alias="from", examples=["447700900000"])
    to: str | None = Field(examples=["447700900001"])
    direction: str | None = Field(examples=["inbound"])
    conversation_id: str | None = Field(description="Vonage's conversation id.")
    mode: str | None = Field(description="What voxbus does with the call's audio: record, echo, record+echo.")
    status: str | None = Field(description="The latest status the carrier reported.", examples=["completed"])
    created_at: Timestamp
    updated_at: Timestamp
    statuses: Annotated[list[CallStatusEntry], Field(description="Every status reported, oldest first.")]
    dtmf: Annotated[str, Field(description="The digits pressed, in order.", examples=["42#"])]
    dtmf_presses: list[DtmfPress]
    session_id: str | None = Field(description="The session of the call's media socket, once it opened.")
    sample_rate: int | None = Field(description="Hz of the call's audio, once its socket opened.")
    stream: dict[str, str] | None = Field(description="What Exotel's passthru said of the media stream.")
    recording: CallRecording | None


class CallList(HttpBody):
    """A page of calls, newest first."""

    calls: list[CallRecord]
    count: Annotated[int, Field(ge=0, description="Calls in this page.")]
    next_cursor: NextCursor


class CallCleared(HttpBody):
    """What the call's socket had queued for the caller is dropped."""

    success: Literal[True] = True
    call_id: str


class CallListQuery(HttpBody):
    limit: int = Field(default=20, ge=1, le=MAX_PAGE, description="Calls per page.")
    cursor: float | None = Field(default=None, description="The `next_cursor` of the page before.")
    provider: Literal["vonage", "exotel", "twilio"] | None = Field(
        default=None, description="Only this carrier's calls."
    )
    status: str | None = Field(
        default=None, description="Only calls whose latest status is this (its first 64 characters)."
    )


# -- carriers ------------------------------------------------------------------------------------


class Accepted(HttpBody):
    """The callback is recorded."""

    success: Literal[True] = True


class MediaSocketUrl(HttpBody):
    """Where Exotel opens the call's media socket."""

    url: Annotated[str, Field(examples=["wss://voice.example.com/ws/exotel?sample-rate=8000"])]


class ModeQuery(HttpBody):
    mode: TelephonyMode | None = Field(
        default=None,
        description="What voxbus does with the call's audio (default: `TELEPHONY_MODE`). In a URL, "
        "`record+echo` is written `record%2Becho` (an unescaped + reads as a space, also taken).",
    )


class VonageAnswerQuery(HttpBody):
    """The answer webhook's query (GET): the call's fields, and the mode voxbus gives it."""

    uuid: str = Field(min_length=1, max_length=128, description="The call leg's id: the call's id in voxbus.")
    conversation_uuid: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    mode: TelephonyMode | None = Field(default=None, description="As `ModeQuery`'s.")


class ExotelCallbackQuery(HttpBody):
    """A Passthru or StatusCallback as a GET query: the fields voxbus reads (Exotel sends more)."""

    CallSid: str = Field(min_length=1, max_length=128)
    CallFrom: str | None = Field(default=None, description="Or `From`.")
    CallTo: str | None = Field(default=None, description="Or `To`.")
    Direction: str | None = None
    Status: str | None = None
    DateUpdated: str | None = Field(default=None, description="Or `CurrentTime`, `EndTime`.")
    digits: str | None = None


class NccoTalkQuery(HttpBody):
    text: str = Field(
        default="Hello from voxbus.", description="What the call hears (its first 1,500 characters)."
    )


class NccoConnectQuery(HttpBody):
    endpoint: str = Field(
        description="A WebSocket (`ws://`, `wss://`), a SIP URI (`sip:`), or a phone number "
        "(digits, optionally with a leading +).",
        examples=["wss://voice.example.com/ws/vonage"],
    )


class TwilioWebhook(HttpBody):
    """The form fields of Twilio's voice and status webhooks that voxbus reads (it takes any
    others Twilio sends)."""

    model_config = ConfigDict(extra="allow")

    CallSid: str = Field(min_length=1, max_length=128, examples=["CA5f3b8c0e2d1a4b6c8e0f2a4c6e8a0b2c"])
    From: str | None = Field(default=None, examples=["+15005550006"])
    To: str | None = Field(default=None, examples=["+15005550001"])
    Direction: str | None = Field(default=None, examples=["inbound"])
    CallStatus: str | None = Field(default=None, examples=["in-progress"])
    Timestamp: str | None = Field(default=None, description="Status callbacks: when, as Twilio says.")


# -- WebSocket endpoints' query parameters -------------------------------------------------------


def _one_of(values: tuple[int, ...] | tuple[str, ...], description: str) -> Any:
    """A query parameter that takes one of `values` (a constant's tuple, as the handler checks it)."""
    return Field(default=None, description=description, json_schema_extra={"enum": list(values)})


class SessionQuery(HttpBody):
    format: str | None = _one_of(SESSION_FORMATS, "The audio's format (default: `DEFAULT_FORMAT`, wav).")
    sample_rate: int | None = _one_of(SAMPLE_RATES, "Hz of raw PCM (default: `DEFAULT_SAMPLE_RATE`, 16000).")
    channels: int | None = _one_of(SESSION_CHANNELS, "Of raw PCM (default 1).")
    user_id: str = Field(default="anonymous", description="Who the session belongs to (lists filter by it).")
    echo: bool = Field(default=False, description="Send each chunk back too.")
    delay_ms: int = Field(default=0, ge=0, le=60_000, description="With `echo`: after this long.")


class EchoQuery(HttpBody):
    delay_ms: int = Field(default=0, ge=0, le=60_000, description="The echo's delay.")
    sample_rate: int | None = _one_of(SAMPLE_RATES, "Hz of the PCM recorded (default 16000).")
    user_id: str = "anonymous"


class DelayedEchoQuery(HttpBody):
    user_id: str = "anonymous"


class WearableQuery(HttpBody):
    codec: Literal["opus", "pcm"] = Field(
        default="opus", description="What a bare binary message (or an event without a format) holds."
    )
    strip_header: bool = Field(default=False, description="Each packet starts with a 3-byte header to drop.")
    sample_rate: int | None = _one_of(SAMPLE_RATES, "Hz of the audio (default 16000).")
    user_id: str = Field(default="anonymous", min_length=1)


class CarrierSocketQuery(HttpBody):
    mode: TelephonyMode | None = Field(default=None, description="The call's mode, as its webhook chose.")
    call: str | None = Field(default=None, description="The carrier's call id, as its webhook gave.")
    sample_rate: int | None = Field(
        default=None, alias="sample-rate", description="Exotel: 8000, 16000 or 24000 (the applet's rate)."
    )
