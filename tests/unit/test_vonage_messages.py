"""Vonage's wire formats: golden NCCOs, the media socket's messages (good and malformed), signed
requests (PyJWT against our verifier), and the call events and egress kinds that carry calls
through the bus."""

import hashlib
import json

import jwt
import pytest

from tests.vonage_carrier import signed
from voxbus.common.call_events import CallDtmf, CallMedia, CallStatus, decode_call_event
from voxbus.common.carrier_events import CarrierMessageError
from voxbus.common.records import EgressAudio, EgressKind, RecordError, SessionFinalized
from voxbus.common.settings import Settings
from voxbus.common.vonage_messages import (
    CallWebhook,
    ClearAction,
    Connected,
    Dtmf,
    parse_socket_event,
)
from voxbus.common.vonage_signature import SignatureError, verify
from voxbus.telephony.vonage import answer_ncco

SECRET = "a-vonage-signature-secret-32-bytes-long"


def test_the_answer_ncco_connects_the_call_to_the_media_socket_of_the_public_host() -> None:
    settings = Settings(
        host_name="https://voice.example.com/",
        vonage_sample_rate=8000,
        telephony_greeting_text="Hello.",
        vonage_signature_secret=SECRET,
    )
    webhook = CallWebhook.parse(
        {"uuid": "aaa-111", "from": 447700900000, "to": "447700900001"}, what="answer"
    )
    assert answer_ncco(settings, webhook, "record+echo").body() == [
        {"action": "talk", "text": "Hello."},
        {
            "action": "connect",
            "eventUrl": ["https://voice.example.com/vonage/event"],
            "endpoint": [
                {
                    "type": "websocket",
                    "uri": "wss://voice.example.com/ws/vonage?call=aaa-111&mode=record%2Becho",
                    "content-type": "audio/l16;rate=8000",
                    "headers": {"call_uuid": "aaa-111", "mode": "record+echo", "from": "447700900000"},
                }
            ],
            "authorization": {"type": "vonage"},
        },
    ]


def test_a_plain_http_host_name_gets_a_plain_ws_media_url_and_no_socket_signature() -> None:
    settings = Settings(host_name="http://localhost:8000")
    (connect,) = answer_ncco(settings, CallWebhook.parse({"uuid": "u"}, what="answer"), "record").body()
    assert connect["endpoint"][0]["uri"] == "ws://localhost:8000/ws/vonage?call=u&mode=record"
    assert "authorization" not in connect


@pytest.mark.parametrize(
    ("content_type", "rate"), [("audio/l16;rate=8000", 8000), ("Audio/L16; rate=24000", 24000)]
)
def test_the_connected_message_gives_the_rate_and_the_ncco_headers(content_type: str, rate: int) -> None:
    event = parse_socket_event(
        json.dumps({"event": "websocket:connected", "content-type": content_type, "call_uuid": "c-1"})
    )
    assert isinstance(event, Connected)
    assert event.rate() == rate
    assert event.header("call_uuid") == "c-1"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{oops", "bad_json"),
        ("[1, 2]", "unknown_event"),
        ('{"event": "websocket:media"}', "unknown_event"),
        ('{"event": "websocket:dtmf"}', "invalid"),
        ('{"event": "websocket:dtmf", "digit": "12"}', "invalid"),
        ('{"event": "websocket:dtmf", "digit": "1", "duration": -5}', "invalid"),
        ('{"event": "websocket:connected"}', "invalid"),
    ],
)
def test_malformed_socket_messages_say_why(text: str, reason: str) -> None:
    with pytest.raises(CarrierMessageError) as refused:
        parse_socket_event(text)
    assert refused.value.reason == reason


def test_json_nested_past_the_parsers_depth_is_bad_json_not_a_crash() -> None:
    # json.loads raises RecursionError (not a ValueError) about 1000 levels down
    with pytest.raises(CarrierMessageError) as refused:
        parse_socket_event("[" * 5000)
    assert refused.value.reason == "bad_json"


def test_a_webhook_timestamp_is_bounded_like_its_other_fields() -> None:
    # stored in the call's status history: a megabyte of it would be kept a hundred times
    with pytest.raises(CarrierMessageError, match="timestamp"):
        CallWebhook.parse({"uuid": "u", "status": "answered", "timestamp": "9" * 1000}, what="event")
    stamp = "2026-12-02T03:15:32.371Z"
    assert CallWebhook.parse({"uuid": "u", "timestamp": stamp}, what="event").timestamp == stamp


def test_a_connected_message_at_another_rate_or_codec_is_refused_by_its_reason() -> None:
    for content_type in ("audio/l16;rate=44100", "audio/pcmu;rate=8000"):
        event = parse_socket_event(json.dumps({"event": "websocket:connected", "content-type": content_type}))
        assert isinstance(event, Connected)
        with pytest.raises(CarrierMessageError) as refused:
            event.rate()
        assert refused.value.reason == "content_type"


def test_dtmf_and_clear_round_trip() -> None:
    assert parse_socket_event('{"event": "websocket:dtmf", "digit": "#", "duration": 260}') == Dtmf(
        event="websocket:dtmf", digit="#", duration=260
    )
    assert json.loads(ClearAction().to_wire()) == {"action": "clear"}


def test_a_signed_request_is_verified_with_its_body_hash() -> None:
    body = b'{"status": "answered"}'
    claims = verify(SECRET, signed(SECRET, body)["Authorization"], body)
    assert claims["payload_hash"] == hashlib.sha256(body).hexdigest()
    assert verify(SECRET, signed(SECRET)["Authorization"], None)["iss"] == "Vonage"


@pytest.mark.parametrize(
    ("authorization", "body"),
    [
        (None, b""),
        ("Basic dXNlcjpwYXNz", b""),
        ("Bearer ", b""),
        (signed("another-secret-of-32-bytes-or-more!!")["Authorization"], None),
        (signed(SECRET, b"{}")["Authorization"], b'{"a": 1}'),
        (signed(SECRET)["Authorization"], b'{"a": 1}'),  # a body, and no hash of it
        ("Bearer " + jwt.encode({"iat": 1}, SECRET, algorithm="HS256"), None),  # issued in 1970
        ("Bearer " + jwt.encode({"payload_hash": "x"}, SECRET, algorithm="HS256"), None),  # no iat
        ("Bearer " + jwt.encode({"iat": 1}, "", algorithm="none"), None),
    ],
)
def test_anything_not_signed_by_vonage_with_our_secret_is_refused(
    authorization: str | None, body: bytes | None
) -> None:
    with pytest.raises(SignatureError):
        verify(SECRET, authorization, body)


def test_call_events_round_trip_and_other_records_on_the_topic_are_left_alone() -> None:
    for event in (
        CallStatus(call_id="c", provider="vonage", at=1.5, status="answered"),
        CallMedia(call_id="c", provider="vonage", at=2.0, session_id="s", rate=16000, mode="echo"),
        CallDtmf(call_id="c", provider="vonage", at=3.0, session_id="s", digit="5", duration_ms=260),
    ):
        message = event.to_message()
        assert message.key == b"c"
        assert decode_call_event(message.value, message.headers) == event
    finalized = SessionFinalized(session_id="s", seq=1, ts_ns=1, file_path="s.wav", duration_seconds=1.0)
    message = finalized.to_message()
    assert decode_call_event(message.value, message.headers) is None
    with pytest.raises(RecordError):
        decode_call_event(
            b"{}",
            CallDtmf(call_id="c", provider="v", at=1, session_id="s", digit="1", duration_ms=1)
            .to_message()
            .headers,
        )


def test_egress_kinds_round_trip_and_records_without_one_are_live_audio() -> None:
    for kind in EgressKind:
        record = EgressAudio(session_id="s", audio=b"\x00\x01", kind=kind)
        message = record.to_message()
        assert EgressAudio.from_message(message.key, message.value, message.headers) == record
    live = EgressAudio(session_id="s", audio=b"a").to_message()
    assert all(name != "k" for name, _ in live.headers)  # what every echo service ever produced
    with pytest.raises(RecordError):
        EgressAudio.from_message(b"s", b"", (("t", b"chunk"), ("k", b"shout")))
