"""Every JSON message a WebSocket client and ingest exchange, one typed model each.

The session protocol (`/api/ws/audio`, `/api/ws/audio/{session_id}`), the delayed-echo protocol
(`/ws/echo`) and the raw echo (`/ws/audio`) speak only these; the wearables' `/ws` speaks
Wyoming's events (`voxbus.common.wyoming_events`), with these refusals as Wyoming error events.
The models are also the API's reference: their docstrings, field descriptions and examples are
what the OpenAPI and AsyncAPI documents are generated from (`model_json_schema(mode="serialization")`).

On the wire a message is `to_wire()`: `json.dumps` of its fields in the order they are declared,
with json's default separators (`", "`, `": "`), the bytes clients have always received. pydantic's
`model_dump_json` writes compact separators: it must not be used for the wire.
"""

import json
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from voxbus.common.constants import SAMPLE_RATES, KeyScope

# The session protocol's query parameters: the values a client may choose from.
SESSION_FORMATS: Final = ("wav", "mp3", "flac", "aac", "pcm", "opus", "ogg", "webm")
SESSION_CHANNELS: Final = (1, 2)
MAX_DELAY_MS: Final = 60_000

# /ws/audio answers any text message with this text (not JSON), and keeps the socket open.
AUDIO_TEXT_ERROR: Final = "Error: Only binary audio data is supported."

_SESSION_ID_EXAMPLE = "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e"


class ClientMessage(BaseModel):
    """A JSON object sent over a WebSocket, as one text message."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        # a field with a default (every literal) is still always sent: documents mark it required
        json_schema_serialization_defaults_required=True,
    )

    def body(self) -> dict[str, Any]:
        """The JSON object: every field, in declaration order; nested messages as objects."""
        return {name: _plain(getattr(self, name)) for name in type(self).model_fields}

    def to_wire(self) -> str:
        """The text message. Strict JSON: a NaN or Infinity in a message is a bug, not something
        to put on the wire."""
        return json.dumps(self.body(), allow_nan=False)

    @classmethod
    def parse(cls, data: Any, *, extra: Literal["ignore", "forbid"] | None = None) -> Self:
        """The message in `data` (decoded JSON), or `MessageError` saying why it is not one.

        Every field must be there: the literal fields (`type`, `action`, `error`) are what tell
        a message from another, so an object lacking one is not this message, whatever defaults
        the server's own construction of it uses. `extra="ignore"` takes fields a newer peer
        adds; otherwise the model's own rule holds (unknown fields refused, unless it says)."""
        try:
            message = cls.model_validate(data, extra=extra)
        except ValidationError as exc:
            raise MessageError(_reason(exc)) from None
        missing = [name for name in cls.model_fields if name not in message.model_fields_set]
        if missing:
            raise MessageError(f"{', '.join(missing)}: Field required")
        return message

    @classmethod
    def from_wire(cls, text: str | bytes, *, extra: Literal["ignore", "forbid"] | None = None) -> Self:
        """The message in a text message; `MessageError` if it is not JSON or not this message."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MessageError(f"not JSON: {exc}") from None
        return cls.parse(data, extra=extra)


class MessageError(ValueError):
    """A client's (or the server's) JSON that is not the message expected; says why."""


def _reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def _plain(value: Any) -> Any:
    return value.body() if isinstance(value, ClientMessage) else value


SessionId = Annotated[
    str, Field(description="The session's id: a UUID, lowercase.", examples=[_SESSION_ID_EXAMPLE])
]
RecordedChunks = Annotated[
    int,
    Field(
        ge=0,
        description="How many of the session's binary chunks the recording holds (every socket "
        "of the session counted). A client that resumes sends again every chunk after these.",
        examples=[42],
    ),
]
FilePath = Annotated[
    str | None,
    Field(
        description="The recording, relative to the audio storage directory "
        "(download it from `/api/audio/sessions/{session_id}/audio`).",
        examples=[f"{_SESSION_ID_EXAMPLE}.wav"],
    ),
]
DurationSeconds = Annotated[float, Field(ge=0, description="Seconds of audio recorded.", examples=[12.5])]


# -- session protocol: server to client ----------------------------------------------------------


class SessionCreated(ClientMessage):
    """The first message on a new session's socket: the session is open and takes binary audio."""

    message: Literal["Audio session created"] = "Audio session created"
    session_id: SessionId
    chunk_count: Annotated[int, Field(ge=0, description="Always 0 for a new session.", examples=[0])]
    status: Literal["active"] = "active"


class SessionResumed(ClientMessage):
    """The first message on a socket that resumed a session (`/api/ws/audio/{session_id}`)."""

    message: Literal["Audio session resumed"] = "Audio session resumed"
    session_id: SessionId
    chunk_count: RecordedChunks
    status: Literal["active"] = "active"


class ChunkAck(ClientMessage):
    """A binary chunk is recorded: one per chunk, in the order they were sent, once it is durable."""

    message: Literal["Chunk processed successfully"] = "Chunk processed successfully"
    session_id: SessionId
    chunk_count: RecordedChunks
    status: Literal["active"] = "active"

    # the hot path: one ack per 20 ms chunk per stream, formatted without building a model
    # (tests prove it equals `to_wire()`)
    _TEMPLATE: ClassVar[str] = (
        '{"message": "Chunk processed successfully", "session_id": "%s", '
        '"chunk_count": %d, "status": "active"}'
    )

    @classmethod
    def wire_for(cls, session_id: str, chunk_count: int) -> str:
        """`ChunkAck(session_id=…, chunk_count=…).to_wire()`, cheaply. `session_id` is a
        canonical session id (a UUID): it holds nothing JSON would escape."""
        return cls._TEMPLATE % (session_id, chunk_count)


class ChunkFailed(ClientMessage):
    """A binary chunk was not recorded (or was empty). After a chunk that was not stored the
    server closes with 1011; the client resumes and sends again every chunk after `chunk_count`."""

    message: Literal["Failed to process chunk"] = "Failed to process chunk"
    session_id: SessionId
    chunk_count: RecordedChunks
    status: Literal["error"] = "error"


class SessionClosed(ClientMessage):
    """The session is closed and its recording complete; the server then closes with 1000."""

    message: Literal["Session closed successfully"] = "Session closed successfully"
    session_id: SessionId
    chunk_count: RecordedChunks
    status: Literal["completed"] = "completed"
    file_path: FilePath
    duration_seconds: DurationSeconds


class SessionFailed(ClientMessage):
    """The session ended in an error (undecodable audio, a failed recording); the file holds what
    was decoded before it. The server then closes with 1000."""

    message: Literal["Session failed"] = "Session failed"
    session_id: SessionId
    chunk_count: RecordedChunks
    status: Literal["error"] = "error"
    file_path: FilePath
    duration_seconds: DurationSeconds
    error: Annotated[str, Field(description="What went wrong.", examples=["audio could not be decoded"])]


class CloseTimedOut(ClientMessage):
    """The recording was not complete within CLOSE_TIMEOUT_SECONDS of a close; the server then
    closes with 1011. The session still completes: its info shows when."""

    message: Literal["Session close timed out"] = "Session close timed out"
    session_id: SessionId
    chunk_count: RecordedChunks
    status: Literal["error"] = "error"
    error: Annotated[str, Field(description="Why.", examples=["the recording was not complete within 30 s"])]


# -- session protocol: client to server ----------------------------------------------------------


class CloseSession(ClientMessage):
    """Close the session after the chunks sent so far: the answer is `SessionClosed` (or
    `SessionFailed`, or `CloseTimedOut`) once the recording is complete. Other fields are ignored."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["control"] = "control"
    action: Literal["close_session"] = "close_session"


# -- errors: sent before the server closes (with the code each says), or instead of an answer -----


class ErrorReply(ClientMessage):
    """Something the server refused; `error` says what."""

    error: str


class InvalidApiKey(ErrorReply):
    """API_KEY is set and the request presents none of its keys (`Authorization: Bearer`,
    `X-API-Key`, `?api_key=`, `?token=`); the server closes with 1008. (/ws/echo sends no message
    and closes with 4001.)"""

    error: Literal["Invalid API key"] = "Invalid API key"


class KeyLacksScope(ErrorReply):
    """A tenant key without the scope the request needs (`stream`, to send audio); close 1008."""

    error: Literal["API key lacks scope"] = "API key lacks scope"
    scope: Annotated[KeyScope, Field(description="The scope needed.", examples=["stream"])]


class SessionNotFound(ErrorReply):
    """No active session has this id (never created, finished, or not a UUID); close 1008."""

    error: Literal["Session not found"] = "Session not found"
    session_id: Annotated[str, Field(description="The id as the client gave it.")]


class TooManyConnections(ErrorReply):
    """Another socket still holds the session (past the resume wait); close 1008."""

    error: Literal["Too many connections for session"] = "Too many connections for session"
    session_id: SessionId
    max: Annotated[int, Field(description="MAX_CONNECTIONS_PER_SESSION.", examples=[1])]


class TooManySessions(ErrorReply):
    """The cluster streams MAX_CONCURRENT_SESSIONS sessions already; close 1013 (try again later)."""

    error: Literal["Too many concurrent sessions"] = "Too many concurrent sessions"
    max: Annotated[int, Field(description="MAX_CONCURRENT_SESSIONS.", examples=[100])]


class InvalidSampleRate(ErrorReply):
    """`sample_rate` is not one of `valid_values`; close 1008."""

    error: Literal["Invalid sample rate"] = "Invalid sample rate"
    valid_values: list[int] = Field(default_factory=lambda: list(SAMPLE_RATES))


class InvalidChannels(ErrorReply):
    """`channels` is not one of `valid_values`; close 1008."""

    error: Literal["Invalid channels"] = "Invalid channels"
    valid_values: list[int] = Field(default_factory=lambda: list(SESSION_CHANNELS))


class InvalidFormat(ErrorReply):
    """`format` is not one of `valid_values`; close 1008."""

    error: Literal["Invalid format"] = "Invalid format"
    valid_values: list[str] = Field(default_factory=lambda: list(SESSION_FORMATS))


class InvalidEcho(ErrorReply):
    """`echo` is not a boolean (`true`, `false`, `1`, `0`); close 1008."""

    error: Literal["Invalid echo"] = "Invalid echo"
    valid_values: list[str] = Field(default_factory=lambda: ["true", "false"])


class InvalidDelay(ErrorReply):
    """`delay_ms` is not an integer within `valid_range` (inclusive); close 1008."""

    error: Literal["Invalid delay_ms"] = "Invalid delay_ms"
    valid_range: list[int] = Field(default_factory=lambda: [0, MAX_DELAY_MS])


class InvalidJsonFormat(ErrorReply):
    """A text message is not JSON (RFC 8259); the socket stays open."""

    error: Literal["Invalid JSON format"] = "Invalid JSON format"


class UnknownMessageType(ErrorReply):
    """A text message is JSON but no message the server knows; the socket stays open."""

    error: Literal["Unknown message type"] = "Unknown message type"
    received: Annotated[
        Any,
        Field(description="The message as the server read it.", examples=[{"type": "note"}]),
    ]


class MessageTooLarge(ErrorReply):
    """A text message is longer than MAX_MESSAGE_SIZE_BYTES; close 1009."""

    error: Literal["Message too large"] = "Message too large"
    size: Annotated[int, Field(description="The message's size in bytes.")]
    max_size: Annotated[int, Field(description="The largest message taken, in bytes.")]


class ChunkTooLarge(ErrorReply):
    """A binary chunk is larger than the server takes (MAX_MESSAGE_SIZE_BYTES, MAX_CHUNK_SIZE_MB,
    the bus's record limit); close 1009. The session stays resumable for smaller chunks."""

    error: Literal["Chunk too large"] = "Chunk too large"
    size: Annotated[int, Field(description="The chunk's size in bytes.")]
    max_size: Annotated[int, Field(description="The largest chunk taken, in bytes.")]


class InternalError(ErrorReply):
    """The server failed; close 1011. A session stays resumable."""

    error: Literal["Internal error"] = "Internal error"


class InvalidParameter(ErrorReply):
    """`/ws/audio`: `delay_ms` or `sample_rate` is invalid; close 1008."""

    error: Literal["Invalid parameter"] = "Invalid parameter"
    valid: Literal["delay_ms 0-60000, sample_rate"] = "delay_ms 0-60000, sample_rate"


class InvalidCallMode(ErrorReply):
    """`/ws/vonage`: the `mode` query is not a call mode; close 1008."""

    error: Literal["Invalid mode"] = "Invalid mode"
    valid_values: list[str] = Field(default_factory=lambda: ["record", "echo", "record+echo"])


class InvalidCarrierRate(ErrorReply):
    """`/ws/exotel`: the `sample-rate` query is not one Exotel streams at; close 1008."""

    error: Literal["Invalid sample rate"] = "Invalid sample rate"
    valid_values: list[int] = Field(default_factory=lambda: [8000, 16000, 24000])


class InvalidWearableParameter(ErrorReply):
    """`/ws`: `codec`, `strip_header`, `sample_rate` or `user_id` (1-256 characters) is invalid;
    close 1008."""

    error: Literal["Invalid parameter"] = "Invalid parameter"
    valid: Literal["codec opus|pcm, strip_header true|false, sample_rate"] = (
        "codec opus|pcm, strip_header true|false, sample_rate"
    )


# -- /ws/echo ---------------------------------------------------------------------------------------


class EchoStreamFormat(ClientMessage):
    """The PCM the server takes and echoes on /ws/echo."""

    sample_rate: Annotated[int, Field(gt=0, strict=True, examples=[16000])]
    chunk_size: Annotated[
        int, Field(gt=0, strict=True, description="Samples per chunk to send.", examples=[4096])
    ]
    channels: Annotated[int, Field(gt=0, strict=True, examples=[1])]
    sample_width: Annotated[int, Field(gt=0, strict=True, description="Bytes per sample.", examples=[2])]


class EchoConfig(ClientMessage):
    """/ws/echo's first message: the PCM to send; binary chunks come back after ECHO_DELAY_MS."""

    type: Literal["config"] = "config"
    data: EchoStreamFormat


class EchoPing(ClientMessage):
    """/ws/echo, client to server: answered with `EchoPong`."""

    type: Literal["ping"] = "ping"


class EchoPong(ClientMessage):
    """/ws/echo: the answer to `EchoPing`."""

    type: Literal["pong"] = "pong"


class EchoInvalidJson(ClientMessage):
    """/ws/echo: a text message is not JSON; the socket stays open."""

    type: Literal["error"] = "error"
    message: Literal["Invalid JSON format"] = "Invalid JSON format"


class EchoUnknownMessage(ClientMessage):
    """/ws/echo: a text message is JSON but not a ping; the socket stays open."""

    type: Literal["error"] = "error"
    message: Literal["Unknown message type"] = "Unknown message type"
    received: Annotated[
        Any, Field(description="The message as the server read it.", examples=[{"type": "x"}])
    ]
