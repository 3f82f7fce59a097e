"""The media-stream envelope Exotel and Twilio share: both carriers' messages as their docs show
them (snake_case PCM with numbers as strings; camelCase μ-law), malformed ones with their reason,
and what voxbus sends back in each carrier's spelling."""

import base64
import json

import pytest

from voxbus.common.carrier_events import CarrierMessageError
from voxbus.common.stream_messages import (
    MAX_PAYLOAD_BYTES,
    ClearOut,
    Dtmf,
    Mark,
    MarkInfo,
    MarkOut,
    Media,
    MediaOut,
    Start,
    Stop,
    parse_stream_event,
)

PCM = bytes(range(256)) * 2 + bytes(128)  # 640 bytes
EXOTEL_START = {
    "event": "start",
    "sequence_number": "1",
    "stream_sid": "S1",
    "start": {
        "stream_sid": "S1",
        "call_sid": "C1",
        "account_sid": "A1",
        "from": "+919800000000",
        "to": "+918000000000",
        "custom_parameters": {"k": "v"},
        "media_format": {"encoding": "audio/x-raw", "sample_rate": "16000", "bit_rate": "16"},
    },
}
TWILIO_START = {
    "event": "start",
    "sequenceNumber": "1",
    "streamSid": "MZ1",
    "start": {
        "accountSid": "AC1",
        "streamSid": "MZ1",
        "callSid": "CA1",
        "tracks": ["inbound"],
        "customParameters": {"k": "v"},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    },
}


def test_exotels_start_in_snake_case_with_numbers_as_strings() -> None:
    start = parse_stream_event(json.dumps(EXOTEL_START))
    assert isinstance(start, Start)
    info = start.start
    assert (info.stream_sid, info.call_sid, info.from_, info.to) == (
        "S1",
        "C1",
        "+919800000000",
        "+918000000000",
    )
    assert (info.media_format.sample_rate, info.media_format.mulaw) == (16000, False)
    assert info.custom_parameters == {"k": "v"}


def test_twilios_start_in_camel_case_with_mulaw() -> None:
    start = parse_stream_event(json.dumps(TWILIO_START))
    assert isinstance(start, Start)
    assert (start.start.stream_sid, start.start.call_sid) == ("MZ1", "CA1")
    assert (start.start.media_format.sample_rate, start.start.media_format.mulaw) == (8000, True)


def test_media_dtmf_mark_and_stop_from_either_carrier() -> None:
    payload = base64.b64encode(PCM).decode()
    media = parse_stream_event(
        json.dumps(
            {
                "event": "media",
                "stream_sid": "S1",
                "media": {"chunk": "2", "timestamp": "200", "payload": payload},
            }
        )
    )
    assert isinstance(media, Media)
    assert (media.audio(), media.media.chunk, media.media.timestamp) == (PCM, 2, 200)
    dtmf = parse_stream_event(
        '{"event": "dtmf", "stream_sid": "S1", "dtmf": {"digit": "5", "duration": "100"}}'
    )
    assert isinstance(dtmf, Dtmf)
    assert (dtmf.dtmf.digit, dtmf.dtmf.duration) == ("5", 100)
    twilio_dtmf = parse_stream_event(
        '{"event": "dtmf", "streamSid": "MZ1", "dtmf": {"track": "inbound_track", "digit": "1"}}'
    )
    assert isinstance(twilio_dtmf, Dtmf)
    assert twilio_dtmf.dtmf.digit == "1"
    mark = parse_stream_event('{"event": "mark", "streamSid": "MZ1", "mark": {"name": "r1"}}')
    assert isinstance(mark, Mark)
    assert mark.mark.name == "r1"
    stop = parse_stream_event(
        '{"event": "stop", "stream_sid": "S1", "stop": {"call_sid": "C1", "reason": "callended"}}'
    )
    assert isinstance(stop, Stop)
    assert stop.stop.reason == "callended"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{oops", "bad_json"),
        ("[" * 5000, "bad_json"),
        ('{"event": "speak"}', "unknown_event"),
        ('{"event": "start", "start": {"stream_sid": "S1"}}', "invalid"),  # no call_sid
        ('{"event": "media"}', "invalid"),
        ('{"event": "dtmf", "dtmf": {"digit": "55"}}', "invalid"),
        ('{"event": "mark", "mark": {}}', "invalid"),
    ],
)
def test_malformed_messages_say_why(text: str, reason: str) -> None:
    with pytest.raises(CarrierMessageError) as refused:
        parse_stream_event(text)
    assert refused.value.reason == reason


@pytest.mark.parametrize(
    ("payload", "reason"),
    [("not base64!", "bad_base64"), ("QUJ", "bad_base64"), ("A" * (MAX_PAYLOAD_BYTES * 2), "too_large")],
)
def test_a_payload_that_is_not_base64_or_too_large_says_why(payload: str, reason: str) -> None:
    media = parse_stream_event(json.dumps({"event": "media", "media": {"payload": payload}}))
    assert isinstance(media, Media)
    with pytest.raises(CarrierMessageError) as refused:
        media.audio()
    assert refused.value.reason == reason


def test_outbound_messages_in_each_carriers_spelling() -> None:
    assert json.loads(MediaOut.of("S1", b"\x01\x02").to_wire(camel=False)) == {
        "event": "media",
        "stream_sid": "S1",
        "media": {"payload": "AQI="},
    }
    mark = MarkOut(stream_sid="MZ1", mark=MarkInfo(name="r1"))
    assert json.loads(mark.to_wire(camel=True)) == {
        "event": "mark",
        "streamSid": "MZ1",
        "mark": {"name": "r1"},
    }
    assert json.loads(ClearOut(stream_sid="MZ1").to_wire(camel=True)) == {
        "event": "clear",
        "streamSid": "MZ1",
    }
