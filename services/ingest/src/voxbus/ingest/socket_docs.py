"""The WebSocket endpoints as `/openapi.json` lists them: each a GET with the upgrade, its query
parameters (`http_bodies`) and what a request without the upgrade gets. Their messages are
`client_messages`, `wyoming_events` and the carriers' own (docs/api.md)."""

from typing import Final

from voxbus.common.http_bodies import (
    CarrierSocketQuery,
    DelayedEchoQuery,
    EchoQuery,
    ErrorBody,
    SessionQuery,
    WearableQuery,
)
from voxbus.common.runtime.api_docs import Operation, Reply
from voxbus.ingest.http_api import SESSION_ID

_TAG: Final = "websocket"
_UPGRADED = Reply(description="Switching to the WebSocket protocol.")
_NOT_UPGRADE = Reply(
    description="The request has no WebSocket upgrade.", media_type="text/plain", schema={"type": "string"}
)
_CLIENT = {101: _UPGRADED, 400: _NOT_UPGRADE}
_CARRIER = {
    **_CLIENT,
    401: Reply(
        description="Not the carrier: no valid signature or credentials, when configured.", body=ErrorBody
    ),
    403: Reply(description="Exotel: an address `EXOTEL_ALLOWED_IPS` does not allow.", body=ErrorBody),
}

SOCKETS: Final[dict[str, Operation]] = {
    "/api/ws/audio": Operation(
        summary="Session protocol: a new recording session",
        description="Binary audio in, one ack per chunk once durable; `close_session` ends it "
        "with the recording's path (docs/protocols/session.md).",
        tag=_TAG,
        query=SessionQuery,
        api_key=True,
        replies=_CLIENT,
    ),
    "/api/ws/audio/{session_id}": Operation(
        summary="Session protocol: resume an active session",
        description="The first message says how many chunks the recording holds; the client "
        "sends every chunk after those again (docs/protocols/session.md).",
        tag=_TAG,
        path_params={"session_id": SESSION_ID},
        api_key=True,
        replies=_CLIENT,
    ),
    "/ws/audio": Operation(
        summary="Echo: binary in, the same bytes back",
        description="Recorded as 16-bit mono PCM at `sample_rate` (docs/protocols/echo.md).",
        tag=_TAG,
        query=EchoQuery,
        api_key=True,
        replies=_CLIENT,
    ),
    "/ws/echo": Operation(
        summary="Delayed echo: the bytes back after `ECHO_DELAY_MS`",
        description="A config message first, then binary audio (docs/protocols/delayed-echo.md).",
        tag=_TAG,
        query=DelayedEchoQuery,
        api_key=True,
        replies=_CLIENT,
    ),
    "/ws": Operation(
        summary="Wearables: Wyoming audio events or bare Opus packets",
        description="One session after another, each opened by `audio-start` or its first packet "
        "(docs/protocols/wyoming.md).",
        tag=_TAG,
        query=WearableQuery,
        api_key=True,
        replies=_CLIENT,
    ),
    "/ws/vonage": Operation(
        summary="A Vonage call's media socket",
        description="As the NCCO of `/vonage/answer` says (docs/protocols/vonage.md).",
        tag=_TAG,
        query=CarrierSocketQuery,
        replies=_CARRIER,
    ),
    "/ws/exotel": Operation(
        summary="An Exotel Voicebot call's media socket",
        description="At the URL `/exotel/stream` gives (docs/protocols/exotel.md).",
        tag=_TAG,
        query=CarrierSocketQuery,
        replies=_CARRIER,
    ),
    "/ws/twilio": Operation(
        summary="A Twilio Media Streams call's media socket",
        description="At the `<Stream url>` of `/twilio/voice` (docs/protocols/twilio.md).",
        tag=_TAG,
        replies=_CARRIER,
    ),
}
