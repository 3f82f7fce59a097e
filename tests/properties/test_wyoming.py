"""Wyoming's TCP framing and events as ingest reads them, whatever a wearable or a stranger sends.

- Events written as Wyoming frames them (data inline or as `data_length` extra bytes, payloads of
  any size) are read back as written, however the bytes were cut; a payload over the chunk limit
  is read past and handed on empty (its header was refused).
- Any bytes, and damaged event streams, give the same events and the same refusal however they
  were cut; only a FramingError with a reason ends the connection; headers and payloads handed on
  stay within their limits; the read ends when the bytes do.
- An event's header and data fields, given any JSON, are read or refused with a reason.
"""

import json
from typing import Any

import hypothesis.strategies as st
from hypothesis import given

from tests.properties.budget import examples
from tests.properties.clients import JSON_VALUES
from tests.properties.streams import cuts, damaged, pieces
from tests.properties.test_client_text import WYOMING
from tests.properties.wyoming_wire import PAYLOAD_LIMIT, read
from voxbus.common.client_messages import MessageError
from voxbus.common.wyoming_events import AudioData, AudioStartData, EventHeader

_DATA = st.dictionaries(
    st.sampled_from(("rate", "width", "channels", "format", "text", "user_id", "x")),
    st.one_of(st.integers(0, 48000), st.text(max_size=12), st.booleans(), st.none()),
    max_size=4,
)


@st.composite
def events(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, object]]]:
    """A stream of events in Wyoming's TCP framing, and what the wire must hand on from it."""
    stream = b""
    expected: list[tuple[str, object]] = []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(("audio-start", "audio-chunk", "audio-stop", "ping", "other")))
        data, extra = draw(_DATA), draw(_DATA)
        payload = draw(st.one_of(st.binary(max_size=64), st.integers(0, 3000).map(bytes)))
        header: dict[str, Any] = {"type": kind, "data": data}
        seen = dict(header)
        if extra:
            header["data_length"] = len(json.dumps(extra).encode())
            seen["data"] = {**data, **extra}
        if payload:
            header["payload_length"] = seen["payload_length"] = len(payload)
        stream += json.dumps(header).encode() + b"\n"
        if extra:
            stream += json.dumps(extra).encode()
        stream += payload
        expected.append(("TEXT", seen))
        if payload:
            expected.append(("BINARY", payload if len(payload) <= PAYLOAD_LIMIT else b""))
    return stream, expected


@examples(150)
@given(written=events(), data=st.data())
def test_events_are_read_as_written_however_they_are_cut(
    written: tuple[bytes, list[tuple[str, object]]], data: st.DataObject
) -> None:
    stream, expected = written
    assert read(pieces(stream, data.draw(cuts(len(stream)), label="cuts"))) == expected


@examples(200)
@given(data=st.data())
def test_any_bytes_give_the_same_events_however_they_are_cut(data: st.DataObject) -> None:
    stream = data.draw(
        st.one_of(st.binary(max_size=3000), events().flatmap(lambda written: damaged(written[0]))),
        label="bytes",
    )
    chunked = read(pieces(stream, data.draw(cuts(len(stream)), label="cuts")))
    assert chunked == read([stream])


@examples(300)
@given(value=st.one_of(JSON_VALUES, WYOMING))
def test_any_event_header_and_data(value: Any) -> None:
    try:
        header = EventHeader.parse(value)
    except MessageError as exc:
        assert str(exc).strip()
        return
    for model in (AudioData, AudioStartData):
        try:
            model.parse(header.fields)
        except MessageError as exc:
            assert str(exc).strip()
