"""Text messages a client sends on an open connection, on every WebSocket path (and Wyoming's events,
which the TCP port hands over as the same text): any string, any JSON, every field of every
message the protocol knows given any JSON value, JSON cut short, JSON nested as deep as a parser
goes. What the client sees: each message is answered as the protocol says (a reply it can read,
an error that says why, or, for a carrier, nothing: refusals are counted and logged), and the
connection goes on. No exception reaches the driver (it would close the socket with 1011)."""

import base64
import json
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import given

from tests.properties.budget import examples
from tests.properties.clients import KEY, Outcome, drive, nested, objects, texts
from voxbus.common.client_messages import AUDIO_TEXT_ERROR

_ANY_INT = st.one_of(st.integers(-5, 70_000), st.integers())

SESSION = objects({"type": st.just("control"), "action": st.just("close_session")})
ECHO = objects({"type": st.sampled_from(("ping", "config"))})
_WYOMING_DATA = objects(
    {
        "rate": st.sampled_from((8000, 16000, 48000)) | _ANY_INT,
        "width": st.just(2) | _ANY_INT,
        "channels": st.sampled_from((1, 2)) | _ANY_INT,
        "format": st.sampled_from(("opus", "pcm")),
        "session_id": st.uuids().map(str),
        "user_id": st.text(max_size=300),
        "token": st.just(KEY),
        "text": st.text(max_size=10),
    }
)
WYOMING = objects(
    {
        "type": st.sampled_from(("audio-start", "audio-chunk", "audio-stop", "ping", "x")),
        "data": _WYOMING_DATA,
        "data_length": _ANY_INT,
        "payload_length": _ANY_INT,
        "version": st.text(max_size=5),
    }
)
_DTMF = objects({"digit": st.sampled_from(("1", "#", "A", "", "12")), "duration": _ANY_INT})
VONAGE = objects(
    {
        "event": st.sampled_from(
            ("websocket:connected", "websocket:dtmf", "websocket:notify", "websocket:cleared", "x")
        ),
        "content-type": st.sampled_from(("audio/l16;rate=16000", "audio/l16;rate=1", "audio/pcmu"))
        | st.builds("audio/l16;rate={}".format, st.text(alphabet="0123456789²٣", max_size=8))
        | st.integers(0, 6000).map(lambda digits: "audio/l16;rate=1" + "0" * digits),
        "digit": st.sampled_from(("1", "#", "", "12")),
        "duration": _ANY_INT,
        "payload": objects({}),
    }
)
_AUDIO = st.binary(max_size=400).map(lambda audio: base64.b64encode(audio).decode())
MEDIA_STREAM = objects(
    {
        "event": st.sampled_from(("connected", "start", "media", "dtmf", "mark", "stop", "x")),
        "start": objects(
            {
                "stream_sid": st.text(max_size=10),
                "call_sid": st.text(max_size=200),
                "custom_parameters": objects({"mode": st.sampled_from(("record", "echo", "x"))}),
                "media_format": objects(
                    {
                        "encoding": st.sampled_from(("audio/x-mulaw", "audio/x-raw", "")),
                        "sample_rate": _ANY_INT | st.text(max_size=6),
                    }
                ),
            }
        ),
        "media": objects({"payload": _AUDIO | st.text(max_size=30), "chunk": _ANY_INT}),
        "dtmf": _DTMF,
        "mark": objects({"name": st.text(max_size=300)}),
        "stop": objects({"reason": st.text(max_size=80)}),
    }
)
_STARTS = {
    "/ws/vonage": [json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"})],
    "/ws/exotel": [
        json.dumps({"event": "connected"}),
        json.dumps({"event": "start", "start": {"stream_sid": "S", "call_sid": "C"}}),
    ],
    "/ws/twilio": [
        json.dumps({"event": "connected"}),
        json.dumps({"event": "start", "start": {"streamSid": "S", "callSid": "C"}}),
    ],
}
SHAPES = {
    "/api/ws/audio": SESSION,
    "/ws/audio": objects({}),
    "/ws/echo": ECHO,
    "/ws": WYOMING,
    "/ws/vonage": VONAGE,
    "/ws/exotel": MEDIA_STREAM,
    "/ws/twilio": MEDIA_STREAM,
}
REPLY_SIZE = 16 * 1024  # a reply may quote what it refuses, cut short; never more than this


def check(path: str, outcome: Outcome, sent: list[str]) -> None:
    """What holds for any text on `path`: the connection goes on (a session's close excepted),
    and every message the client got is one it can read."""
    conn = outcome.connection
    assert outcome.refused is None, outcome.refused
    if conn.closed is not None:  # only the session protocol's close, and a carrier's stop, close
        assert conn.closed[0] == 1000, conn.closed
    for message in conn.sent:
        assert isinstance(message, str)
        longest = max(map(len, sent), default=0)
        assert len(message) <= REPLY_SIZE + 12 * longest
        if path == "/ws/audio":
            assert message == AUDIO_TEXT_ERROR
            continue
        reply: Any = json.loads(message)  # JSON the client can read
        assert isinstance(reply, dict)
        if "error" in reply:
            assert isinstance(reply["error"], str) and reply["error"].strip()
        if reply.get("type") == "error":  # Wyoming's error event, /ws/echo's error
            said = reply["data"]["text"] if path == "/ws" else reply["message"]
            assert said.strip()


@pytest.mark.parametrize("path", list(SHAPES))
@examples(100)
@given(data=st.data())
def test_any_text_is_answered_as_the_protocol_says(path: str, data: st.DataObject) -> None:
    start = data.draw(st.sampled_from(([], _STARTS.get(path, []))), label="start")  # a call, or not yet
    sent = data.draw(st.lists(texts(SHAPES[path]), min_size=1, max_size=5), label="texts")
    check(path, drive(path, sent, start=start), sent)


@pytest.mark.parametrize("path", list(SHAPES))
def test_json_nested_to_any_depth_is_answered(path: str) -> None:
    """Up to past the depth where the parser gives up: a reply that quotes the message, or
    parses it again, must not be the first to run out of stack."""
    sent = [nested(depth, objects=depth % 2 == 0) for depth in range(1, 1100)]
    if path == "/ws/vonage":  # a notify's payload is encoded again, for the log
        sent = [f'{{"event": "websocket:notify", "payload": {{"a": {text}}}}}' for text in sent]
    check(path, drive(path, sent, start=_STARTS.get(path, [])), sent)
