"""Golden text of every JSON message a WebSocket client and ingest exchange, and round trips.

The expected strings are the bytes clients have always received: `json.dumps` with its default
separators and the keys in the order written here.
"""

import json

import pytest

from voxbus.common import client_messages
from voxbus.common.client_messages import (
    AUDIO_TEXT_ERROR,
    ChunkAck,
    ChunkFailed,
    ChunkTooLarge,
    ClientMessage,
    CloseSession,
    CloseTimedOut,
    EchoConfig,
    EchoInvalidJson,
    EchoPing,
    EchoPong,
    EchoStreamFormat,
    EchoUnknownMessage,
    InternalError,
    InvalidApiKey,
    InvalidCallMode,
    InvalidCarrierRate,
    InvalidChannels,
    InvalidDelay,
    InvalidEcho,
    InvalidFormat,
    InvalidJsonFormat,
    InvalidParameter,
    InvalidSampleRate,
    InvalidWearableParameter,
    KeyLacksScope,
    MessageError,
    MessageTooLarge,
    SessionClosed,
    SessionCreated,
    SessionFailed,
    SessionNotFound,
    SessionResumed,
    TooManyConnections,
    TooManySessions,
    UnknownMessageType,
)

SID = "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e"

GOLDEN: list[tuple[ClientMessage, str]] = [
    # session protocol, server to client
    (
        SessionCreated(session_id=SID, chunk_count=0),
        '{"message": "Audio session created", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 0, "status": "active"}',
    ),
    (
        SessionResumed(session_id=SID, chunk_count=42),
        '{"message": "Audio session resumed", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 42, "status": "active"}',
    ),
    (
        ChunkAck(session_id=SID, chunk_count=7),
        '{"message": "Chunk processed successfully", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 7, "status": "active"}',
    ),
    (
        ChunkFailed(session_id=SID, chunk_count=3),
        '{"message": "Failed to process chunk", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 3, "status": "error"}',
    ),
    (
        SessionClosed(session_id=SID, chunk_count=5, file_path=f"{SID}.wav", duration_seconds=0.1),
        '{"message": "Session closed successfully", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 5, "status": "completed", '
        '"file_path": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e.wav", "duration_seconds": 0.1}',
    ),
    (
        SessionClosed(session_id=SID, chunk_count=0, file_path=None, duration_seconds=0.0),
        '{"message": "Session closed successfully", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 0, "status": "completed", "file_path": null, "duration_seconds": 0.0}',
    ),
    (
        SessionFailed(
            session_id=SID,
            chunk_count=2,
            file_path=f"{SID}.wav",
            duration_seconds=1.25,
            error="audio could not be decoded: ü",
        ),
        '{"message": "Session failed", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 2, "status": "error", "file_path": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e.wav", '
        '"duration_seconds": 1.25, "error": "audio could not be decoded: \\u00fc"}',
    ),
    (
        CloseTimedOut(session_id=SID, chunk_count=9, error="the recording was not complete within 30 s"),
        '{"message": "Session close timed out", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 9, "status": "error", "error": "the recording was not complete within 30 s"}',
    ),
    # session protocol, client to server
    (CloseSession(), '{"type": "control", "action": "close_session"}'),
    # errors
    (InvalidApiKey(), '{"error": "Invalid API key"}'),
    (KeyLacksScope(scope="stream"), '{"error": "API key lacks scope", "scope": "stream"}'),
    (
        SessionNotFound(session_id="not-a-uuid"),
        '{"error": "Session not found", "session_id": "not-a-uuid"}',
    ),
    (
        TooManyConnections(session_id=SID, max=1),
        '{"error": "Too many connections for session", '
        '"session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", "max": 1}',
    ),
    (TooManySessions(max=100), '{"error": "Too many concurrent sessions", "max": 100}'),
    (
        InvalidSampleRate(),
        '{"error": "Invalid sample rate", "valid_values": [8000, 16000, 22050, 44100, 48000, 96000]}',
    ),
    (InvalidChannels(), '{"error": "Invalid channels", "valid_values": [1, 2]}'),
    (
        InvalidFormat(),
        '{"error": "Invalid format", '
        '"valid_values": ["wav", "mp3", "flac", "aac", "pcm", "opus", "ogg", "webm"]}',
    ),
    (InvalidEcho(), '{"error": "Invalid echo", "valid_values": ["true", "false"]}'),
    (InvalidDelay(), '{"error": "Invalid delay_ms", "valid_range": [0, 60000]}'),
    (InvalidJsonFormat(), '{"error": "Invalid JSON format"}'),
    (
        UnknownMessageType(received={"type": "control", "action": "explode", "n": [1, 2.5, None, True]}),
        '{"error": "Unknown message type", '
        '"received": {"type": "control", "action": "explode", "n": [1, 2.5, null, true]}}',
    ),
    (UnknownMessageType(received=[1, 2]), '{"error": "Unknown message type", "received": [1, 2]}'),
    (UnknownMessageType(received=None), '{"error": "Unknown message type", "received": null}'),
    (
        MessageTooLarge(size=2048, max_size=1024),
        '{"error": "Message too large", "size": 2048, "max_size": 1024}',
    ),
    (
        ChunkTooLarge(size=1048577, max_size=1048576),
        '{"error": "Chunk too large", "size": 1048577, "max_size": 1048576}',
    ),
    (InternalError(), '{"error": "Internal error"}'),
    (
        InvalidParameter(),
        '{"error": "Invalid parameter", "valid": "delay_ms 0-60000, sample_rate"}',
    ),
    (
        InvalidWearableParameter(),
        '{"error": "Invalid parameter", "valid": "codec opus|pcm, strip_header true|false, sample_rate"}',
    ),
    (InvalidCarrierRate(), '{"error": "Invalid sample rate", "valid_values": [8000, 16000, 24000]}'),
    (
        InvalidCallMode(),
        '{"error": "Invalid mode", "valid_values": ["record", "echo", "record+echo"]}',
    ),
    # /ws/echo
    (
        EchoConfig(data=EchoStreamFormat(sample_rate=16000, chunk_size=4096, channels=1, sample_width=2)),
        '{"type": "config", '
        '"data": {"sample_rate": 16000, "chunk_size": 4096, "channels": 1, "sample_width": 2}}',
    ),
    (EchoPing(), '{"type": "ping"}'),
    (EchoPong(), '{"type": "pong"}'),
    (EchoInvalidJson(), '{"type": "error", "message": "Invalid JSON format"}'),
    (
        EchoUnknownMessage(received={"type": "hello"}),
        '{"type": "error", "message": "Unknown message type", "received": {"type": "hello"}}',
    ),
]


def _name(case: tuple[ClientMessage, str]) -> str:
    return type(case[0]).__name__


@pytest.mark.parametrize("case", GOLDEN, ids=[_name(case) for case in GOLDEN])
def test_golden(case: tuple[ClientMessage, str]) -> None:
    message, wire = case
    assert message.to_wire() == wire
    # what the server wrote before the models: json.dumps of the object, keys in this order
    assert wire == json.dumps(json.loads(wire), allow_nan=False)


@pytest.mark.parametrize("case", GOLDEN, ids=[_name(case) for case in GOLDEN])
def test_round_trip(case: tuple[ClientMessage, str]) -> None:
    message, wire = case
    assert type(message).from_wire(wire) == message


def test_every_message_has_a_golden_case() -> None:
    models = {
        model
        for model in vars(client_messages).values()
        if isinstance(model, type)
        and issubclass(model, ClientMessage)
        and model.__module__ == client_messages.__name__
    }
    abstract = {ClientMessage, client_messages.ErrorReply, EchoStreamFormat}  # parts of messages
    assert models - abstract == {type(message) for message, _ in GOLDEN}


@pytest.mark.parametrize("session_id", [SID, "00000000-0000-0000-0000-000000000000"])
@pytest.mark.parametrize("chunk_count", [0, 1, 7, 123_456_789])
def test_the_fast_ack_is_the_models(session_id: str, chunk_count: int) -> None:
    fast = ChunkAck.wire_for(session_id, chunk_count)
    assert fast == ChunkAck(session_id=session_id, chunk_count=chunk_count).to_wire()
    assert json.loads(fast) == {
        "message": "Chunk processed successfully",
        "session_id": session_id,
        "chunk_count": chunk_count,
        "status": "active",
    }
    assert fast == json.dumps(json.loads(fast))


def test_the_fast_ack_golden() -> None:
    assert ChunkAck.wire_for(SID, 7) == (
        '{"message": "Chunk processed successfully", "session_id": "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e", '
        '"chunk_count": 7, "status": "active"}'
    )


def test_audio_text_error_is_plain_text() -> None:
    assert AUDIO_TEXT_ERROR == "Error: Only binary audio data is supported."


def test_nan_is_never_sent() -> None:
    with pytest.raises(ValueError, match="not JSON compliant"):
        UnknownMessageType(received=[float("nan")]).to_wire()


def test_unknown_fields_are_refused_but_a_close_request_ignores_them() -> None:
    with pytest.raises(MessageError, match="extra"):
        InvalidApiKey.from_wire('{"error": "Invalid API key", "extra": 1}')
    assert CloseSession.from_wire('{"type": "control", "action": "close_session", "x": 1}') == CloseSession()
    with pytest.raises(MessageError, match="action"):
        CloseSession.from_wire('{"type": "control", "action": "explode"}')


@pytest.mark.parametrize("lacking", [{}, {"note": "hi"}, {"type": "control"}, {"action": "close_session"}])
def test_a_message_read_must_carry_every_field_its_defaults_would_fill(lacking: dict[str, str]) -> None:
    """Defaults are for the server building a message; read, an object lacking a literal field is
    another message (a `{}` taken as a close request ended the session)."""
    with pytest.raises(MessageError, match="Field required"):
        CloseSession.parse(lacking)


def test_a_config_without_its_type_is_not_a_config() -> None:
    data = '{"sample_rate": 16000, "chunk_size": 4096, "channels": 1, "sample_width": 2}'
    with pytest.raises(MessageError, match="type: Field required"):
        EchoConfig.from_wire(f'{{"data": {data}}}', extra="ignore")
    config = EchoConfig.from_wire(f'{{"type": "config", "data": {data}, "new": 1}}', extra="ignore")
    assert config.data.sample_rate == 16000
    with pytest.raises(MessageError, match="not JSON"):
        EchoConfig.from_wire("{")


def test_echo_stream_format_takes_positive_integers_only() -> None:
    for bad in ('{"sample_rate": true}', '{"sample_rate": 0}', '{"sample_rate": 16000.0}'):
        fields = {"sample_rate": 16000, "chunk_size": 4096, "channels": 1, "sample_width": 2} | json.loads(
            bad
        )
        with pytest.raises(MessageError):
            EchoStreamFormat.from_wire(json.dumps(fields))


@pytest.mark.parametrize("case", GOLDEN, ids=[_name(case) for case in GOLDEN])
def test_documented_for_the_api_reference(case: tuple[ClientMessage, str]) -> None:
    """What the OpenAPI/AsyncAPI documents are generated from: a description, and every field
    the wire always carries marked required."""
    model = type(case[0])
    schema = model.model_json_schema(mode="serialization")
    assert schema.get("description"), f"{model.__name__} needs a docstring"
    assert set(schema["required"]) == set(json.loads(case[1]))
    assert schema.get("additionalProperties", True) is (model is CloseSession)
