"""Wyoming events: what wearables send to `/ws` and to the Wyoming TCP port, and what ingest answers.

An event is a JSON header `{"type", "data", "data_length", "payload_length", "version"}` and an
optional binary payload. Over a WebSocket the header is one text message (its `data` inline, a
trailing newline allowed) and the payload, when `payload_length > 0`, is the next binary message.
Over TCP it is Wyoming's own framing: the header as one line ending in `\\n`, then `data_length`
bytes of JSON merged over `data`, then `payload_length` bytes of payload. Both framings carry the
same events (docs/protocols/wyoming.md).

The client's events are read leniently (unknown fields ignored, the format fields optional) since
devices and apps differ; the server's are the typed `ClientMessage`s below, sent with `to_wire()`.
"""

from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxbus.common.client_messages import (
    ChunkTooLarge,
    ClientMessage,
    ErrorReply,
    InternalError,
    InvalidApiKey,
    InvalidWearableParameter,
    KeyLacksScope,
    MessageError,
    MessageTooLarge,
    SessionId,
    SessionNotFound,
    TooManyConnections,
    TooManySessions,
)

WYOMING_CODECS: Final = ("opus", "pcm")  # `data.format` and `?codec=`
PCM_WIDTH: Final = 2  # bytes per sample: voxbus takes 16-bit PCM


class EventType(StrEnum):
    AUDIO_START = "audio-start"
    AUDIO_CHUNK = "audio-chunk"
    AUDIO_STOP = "audio-stop"
    PING = "ping"


class Rejection(StrEnum):
    """Why an event or payload was refused: the `code` of the error event, and the `reason`
    label of `voxbus_ingest_rejected_messages_total`. Refusals every protocol shares (a message
    over the size limit, a session not found, too many sessions) have the code `from_reply`
    names them by."""

    INVALID_JSON = "invalid-json"  # a header that is not JSON
    INVALID_EVENT = "invalid-event"  # JSON, but no event (no type, a length that is no count, …)
    UNKNOWN_EVENT = "unknown-event"
    PAYLOAD_MISSING = "payload-missing"  # a header promised a payload; a text message came
    PAYLOAD_TOO_LARGE = "payload-too-large"  # an audio-chunk header announces more than the limit
    EMPTY_PAYLOAD = "empty-payload"
    INVALID_OPUS = "invalid-opus"  # an Opus packet libopus refuses
    FORMAT_MISMATCH = "format-mismatch"  # a chunk's rate, width, channels or format is not its session's
    INVALID_FORMAT = "invalid-format"  # an audio-start voxbus cannot record
    NO_SESSION = "no-session"  # audio, or audio-stop, with no session open
    HEADER_TOO_LONG = "header-too-long"  # TCP: no newline within MAX_MESSAGE_SIZE_BYTES


# -- client to server ---------------------------------------------------------------------------


class EventHeader(BaseModel):
    """An event's header, with `data` inline (TCP's `data_length` already merged)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Annotated[str, Field(min_length=1, max_length=64, strict=True)]
    data: dict[str, Any] | None = None
    data_length: Annotated[int | None, Field(ge=0, strict=True)] = None
    payload_length: Annotated[int | None, Field(ge=0, strict=True)] = None

    @classmethod
    def parse(cls, value: Any) -> Self:
        """The header in `value` (decoded JSON); `MessageError` saying why it is none."""
        try:
            return cls.model_validate(value)
        except ValidationError as exc:
            raise MessageError(_reason(exc)) from None

    @property
    def payload_size(self) -> int:
        return self.payload_length or 0

    @property
    def fields(self) -> dict[str, Any]:
        """`data`, or nothing."""
        return self.data or {}


class AudioData(BaseModel):
    """The format fields of `audio-start` and `audio-chunk` data; each optional (a missing one is
    the session's, or the connect query's)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    rate: Annotated[int | None, Field(gt=0, strict=True)] = None
    width: Annotated[int | None, Field(gt=0, strict=True)] = None
    channels: Annotated[int | None, Field(gt=0, strict=True)] = None
    format: Literal["opus", "pcm"] | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Self:
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MessageError(_reason(exc)) from None


class AudioStartData(AudioData):
    """`audio-start` data: the format, and voxbus's own optional fields."""

    session_id: Annotated[str | None, Field(max_length=64, strict=True)] = None  # resume this session
    user_id: Annotated[str | None, Field(min_length=1, max_length=256, strict=True)] = None
    token: Annotated[str | None, Field(max_length=4096, strict=True)] = None  # the API key, over TCP


def _reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


# refusals every protocol shares, as the error events' codes (the metric's reasons too): a renamed
# class must not rename a code clients and dashboards know
REPLY_CODES: Final[dict[type[ErrorReply], str]] = {
    InvalidApiKey: "invalid-api-key",
    KeyLacksScope: "key-lacks-scope",
    InvalidWearableParameter: "invalid-wearable-parameter",
    SessionNotFound: "session-not-found",
    TooManyConnections: "too-many-connections",
    TooManySessions: "too-many-sessions",
    MessageTooLarge: "message-too-large",
    ChunkTooLarge: "chunk-too-large",
    InternalError: "internal-error",
}


class BrokenFraming(ErrorReply):
    """Wyoming over TCP: bytes that cannot be read as an event (a header line that is not JSON or
    too long, a length that is no count). Nothing after them can be framed: the server closes."""

    code: Rejection


# -- server to client ---------------------------------------------------------------------------


class SessionStartedData(ClientMessage):
    session_id: SessionId
    chunk_count: Annotated[
        int,
        Field(
            ge=0,
            description="The session's audio chunks the recording holds: 0 for a new session; on "
            "a resume, the client sends again every chunk after these.",
        ),
    ]
    resumed: bool


class SessionStarted(ClientMessage):
    """After `audio-start` (or the first bare packet): the session is open and takes audio."""

    type: Literal["session-started"] = "session-started"
    data: SessionStartedData


class SessionStoppedData(ClientMessage):
    session_id: SessionId
    chunk_count: Annotated[int, Field(ge=0, description="The chunks the recording holds: all of them.")]
    reason: Annotated[str, Field(description="Why it stopped.", examples=["audio-stop"])]


class SessionStopped(ClientMessage):
    """The session is stopped: every chunk it took is durable, and the recording is being
    finalized (`GET /api/audio/sessions/{session_id}` shows its files)."""

    type: Literal["session-stopped"] = "session-stopped"
    data: SessionStoppedData


class ErrorData(ClientMessage):
    text: str
    code: str


class WyomingError(ClientMessage):
    """Wyoming's `error` event: `code` says what was refused (a `Rejection`, or the kebab-case
    name of the server's error reply), `text` says it for people."""

    type: Literal["error"] = "error"
    data: ErrorData

    @classmethod
    def of(cls, code: Rejection, text: str) -> Self:
        return cls(data=ErrorData(text=text, code=code.value))

    @classmethod
    def closing(cls, code: int, reason: str) -> Self:
        """Over TCP, which has no close frame: what a WebSocket's close `code` and `reason` say."""
        return cls(data=ErrorData(text=reason, code=_CLOSE_CODES.get(code, "closed")))

    @classmethod
    def from_reply(cls, reply: ErrorReply) -> Self:
        """A refusal every protocol shares (`InvalidApiKey`, `TooManySessions`, …) as an error event."""
        if isinstance(reply, BrokenFraming):
            return cls.of(reply.code, reply.error)
        code = REPLY_CODES.get(type(reply), "refused")
        details = ", ".join(f"{name}: {value}" for name, value in reply.body().items() if name != "error")
        text = f"{reply.error} ({details})" if details else reply.error
        return cls(data=ErrorData(text=text, code=code))


# the close codes a connection is closed with, without an error reply of its own, as an error
# event's code (refusals send their reply, as an error event, before they close)
_CLOSE_CODES: Final = {1011: "server-error", 1012: "server-restarting"}


class PongData(ClientMessage):
    text: str | None


class Pong(ClientMessage):
    """The answer to `ping` (its `text` copied)."""

    type: Literal["pong"] = "pong"
    data: PongData


class AudioChunkData(ClientMessage):
    rate: int
    width: int
    channels: int


class AudioChunkHeader(ClientMessage):
    """Egress audio (prompts, echo) to the client: this header, then the payload."""

    type: Literal["audio-chunk"] = "audio-chunk"
    data: AudioChunkData
    payload_length: int
