"""The typed wire classes of the telephony carriers (Vonage's media socket and webhooks, the
Exotel/Twilio media-stream envelope, Exotel's callbacks), given any text or any value in any
field: each reads as its model or is refused with the carrier error (a metrics reason the
adapters count, and a message for the log); what voxbus writes reads back as what it meant."""

import base64
import json
import string
from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from tests.properties.budget import examples
from tests.properties.clients import JSON_VALUES, objects, texts
from tests.properties.test_client_text import MEDIA_STREAM, VONAGE
from voxbus.common.carrier_events import CARRIER_MESSAGE_REASONS, CarrierMessageError
from voxbus.common.exotel_callbacks import CallbackError, ExotelCallback
from voxbus.common.stream_messages import (
    MAX_PAYLOAD_BYTES,
    Media,
    MediaOut,
    parse_stream_event,
)
from voxbus.common.vonage_messages import VONAGE_RATES, CallWebhook, Connected, parse_socket_event


def refused(exc: CarrierMessageError) -> None:
    assert exc.reason in CARRIER_MESSAGE_REASONS
    assert str(exc).strip()


@examples(300)
@given(text=texts(VONAGE))
def test_any_vonage_socket_text(text: str) -> None:
    try:
        event = parse_socket_event(text)
    except CarrierMessageError as exc:
        refused(exc)
        return
    if isinstance(event, Connected):
        try:
            assert event.rate() in VONAGE_RATES
        except CarrierMessageError as exc:
            refused(exc)


_DIGITS = st.text(alphabet=string.digits + "²٣\u0660", max_size=8)


@examples(200)
@given(
    content_type=st.one_of(
        st.text(max_size=40),
        st.builds("audio/l16;rate={}".format, _DIGITS),
        st.builds("{}audio/L16 ; RATE = {}{}".format, st.sampled_from(("", " ")), _DIGITS, st.just(" ")),
        st.integers(0, 6000).map(lambda digits: "audio/l16;rate=1" + "0" * digits),
    )
)
def test_any_vonage_content_type(content_type: str) -> None:
    event = Connected.model_validate({"event": "websocket:connected", "content-type": content_type})
    try:
        assert event.rate() in VONAGE_RATES
    except CarrierMessageError as exc:
        assert exc.reason == "content_type" and str(exc).strip()


@examples(300)
@given(text=texts(MEDIA_STREAM))
def test_any_media_stream_text(text: str) -> None:
    try:
        event = parse_stream_event(text)
    except CarrierMessageError as exc:
        refused(exc)
        return
    if isinstance(event, Media):
        try:
            assert len(event.audio()) <= MAX_PAYLOAD_BYTES
        except CarrierMessageError as exc:
            refused(exc)


@examples(100)
@given(audio=st.binary(max_size=2000), sid=st.text(max_size=40), camel=st.booleans())
def test_media_voxbus_sends_reads_back_as_the_same_audio(audio: bytes, sid: str, camel: bool) -> None:
    event = parse_stream_event(MediaOut.of(sid, audio).to_wire(camel=camel))
    assert isinstance(event, Media)
    assert event.audio() == audio


@examples(50)
@given(size=st.integers(MAX_PAYLOAD_BYTES - 3, MAX_PAYLOAD_BYTES + 3))
def test_a_media_payload_is_taken_up_to_its_limit(size: int) -> None:
    payload = base64.b64encode(bytes(size)).decode()
    event = parse_stream_event(json.dumps({"event": "media", "media": {"payload": payload}}))
    assert isinstance(event, Media)
    if size <= MAX_PAYLOAD_BYTES:
        assert event.audio() == bytes(size)
    else:
        try:
            event.audio()
        except CarrierMessageError as exc:
            assert exc.reason == "too_large"
        else:
            raise AssertionError("a payload over the limit was taken")


_WEBHOOK = objects(
    {
        "uuid": st.text(max_size=200),
        "conversation_uuid": st.text(max_size=10),
        "from": st.text(max_size=100) | st.integers(),
        "status": st.text(max_size=100),
        "timestamp": st.text(max_size=100),
    }
)


@examples(200)
@given(body=st.one_of(JSON_VALUES, _WEBHOOK))
def test_any_vonage_webhook_body(body: Any) -> None:
    try:
        webhook = CallWebhook.parse(body, what="event webhook")
    except CarrierMessageError as exc:
        refused(exc)
        return
    assert 1 <= len(webhook.uuid) <= 128


_CALLBACK = st.dictionaries(
    st.sampled_from(("CallSid", "CallFrom", "To", "Status", "digits", "Stream", "Stream[Status]", "x")),
    st.one_of(st.text(max_size=200), JSON_VALUES.map(json.dumps)),
)


@examples(200)
@given(fields=_CALLBACK)
def test_any_exotel_callback(fields: dict[str, str]) -> None:
    try:
        callback = ExotelCallback.parse(fields)
    except CallbackError as exc:
        assert str(exc).strip()
        return
    assert 1 <= len(callback.call_sid) <= 128
