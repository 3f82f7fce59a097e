"""Golden wire tests of Wyoming's two framings: the events ingest reads from TCP bytes (however
they are split across reads) are the text and binary messages a `/ws` client sends, and the
events it writes are what the `wyoming` package reads."""

import asyncio
import json

import pytest
from aiohttp import WSMsgType
from wyoming.audio import AudioChunk, AudioStart
from wyoming.event import Event, async_read_event, async_write_event

from voxbus.common.client_messages import ChunkTooLarge, ErrorReply, InvalidApiKey, TooManySessions
from voxbus.common.wyoming_events import (
    AudioChunkData,
    AudioChunkHeader,
    ErrorData,
    Pong,
    PongData,
    Rejection,
    SessionStarted,
    SessionStartedData,
    SessionStopped,
    SessionStoppedData,
    WyomingError,
)
from voxbus.ingest.wyoming_framing import FramingError, WyomingTcpWire

SID = "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e"
LIMIT = 1024


class Collect:
    """An asyncio writer's transport stand-in: the bytes written, in order (a byte stream)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.closing = False

    def write(self, data: bytes) -> None:
        self.data += data

    def writelines(self, parts: list[bytes]) -> None:
        for part in parts:
            self.write(part)

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    async def drain(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None


def wire_for(*pieces: bytes, header_limit: int = LIMIT, payload_limit: int = LIMIT) -> WyomingTcpWire:
    reader = asyncio.StreamReader(limit=header_limit)
    for piece in pieces:
        reader.feed_data(piece)
    reader.feed_eof()
    return WyomingTcpWire(
        reader,
        Collect(),  # type: ignore[arg-type]
        header_limit=header_limit,
        payload_limit=payload_limit,
        write_seconds=5,
    )


async def messages(wire: WyomingTcpWire) -> list[tuple[WSMsgType, object]]:
    out = []
    while True:
        message = await wire.receive()
        if message.type == WSMsgType.CLOSED:
            return out
        out.append((message.type, message.data))


async def test_data_length_is_merged_over_inline_data() -> None:
    header = {"type": "audio-start", "data": {"rate": 8000, "width": 2}, "data_length": 0}
    extra = json.dumps({"rate": 16000, "channels": 1}).encode()
    header["data_length"] = len(extra)
    wire = wire_for(json.dumps(header).encode() + b"\n" + extra)
    [(kind, text)] = await messages(wire)
    assert kind == WSMsgType.TEXT
    assert json.loads(str(text)) == {
        "type": "audio-start",
        "data": {"rate": 16000, "width": 2, "channels": 1},
    }


async def test_what_the_wyoming_package_writes_reads_as_ws_messages_however_split() -> None:
    """The package always sends `data` as data_length bytes; the payload follows as binary."""
    sink = Collect()
    pcm = bytes(range(256)) * 3
    for event in (AudioStart(rate=16000, width=2, channels=1), AudioChunk(16000, 2, 1, audio=pcm)):
        await async_write_event(event.event(), sink)  # type: ignore[arg-type]
    stream = bytes(sink.data)
    for split in (1, 7, 64, len(stream)):  # every piece boundary, including inside the payload
        pieces = [stream[i : i + split] for i in range(0, len(stream), split)]
        got = await messages(wire_for(*pieces))
        assert [kind for kind, _ in got] == [WSMsgType.TEXT, WSMsgType.TEXT, WSMsgType.BINARY]
        start, chunk = json.loads(str(got[0][1])), json.loads(str(got[1][1]))
        assert start["type"] == "audio-start"
        assert start["data"] == {"rate": 16000, "width": 2, "channels": 1, "timestamp": None}
        assert chunk["type"] == "audio-chunk"
        assert chunk["payload_length"] == len(pcm)
        assert got[2][1] == pcm


async def test_two_events_in_one_read_come_out_as_two() -> None:
    ping = b'{"type": "ping", "data": {"text": "a"}}\n'
    chunk = b'{"type": "audio-chunk", "payload_length": 3}\n\x01\x02\x03'
    got = await messages(wire_for(ping + chunk + ping))
    assert got == [
        (WSMsgType.TEXT, ping.decode()),
        (WSMsgType.TEXT, chunk[: chunk.index(b"\n") + 1].decode()),
        (WSMsgType.BINARY, b"\x01\x02\x03"),
        (WSMsgType.TEXT, ping.decode()),
    ]


async def test_a_payload_over_the_limit_is_read_past_and_the_next_event_still_read() -> None:
    big = b'{"type": "audio-chunk", "payload_length": 5000}\n' + b"\x00" * 5000
    ping = b'{"type": "ping"}\n'
    got = await messages(wire_for(big, ping, payload_limit=1000))
    assert got[1] == (WSMsgType.BINARY, b"")  # the adapter refused it from its header
    assert got[2] == (WSMsgType.TEXT, ping.decode())


async def test_a_connection_cut_inside_a_payload_ends_without_a_partial_chunk() -> None:
    got = await messages(wire_for(b'{"type": "audio-chunk", "payload_length": 10}\n\x01\x02'))
    assert [kind for kind, _ in got] == [WSMsgType.TEXT]


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (b"not json\n", Rejection.INVALID_JSON),
        (b'["a list"]\n', Rejection.INVALID_EVENT),
        (b'{"type": "audio-chunk", "payload_length": -1}\n', Rejection.INVALID_EVENT),
        (b'{"type": "x", "data_length": 4}\nnope', Rejection.INVALID_JSON),
        (b'{"type": "x", "data_length": 2}\n[]', Rejection.INVALID_EVENT),
        (b'{"type": "x", "data_length": 999999}\n', Rejection.HEADER_TOO_LONG),
        (b"{" + b" " * 5000, Rejection.HEADER_TOO_LONG),
    ],
)
async def test_bytes_that_cannot_be_framed_end_the_connection_with_a_reason(
    stream: bytes, code: Rejection
) -> None:
    wire = wire_for(stream)
    with pytest.raises(FramingError) as refused:
        await wire.receive()
    assert WyomingError.from_reply(refused.value.reply).data.code == code.value


GOLDEN = [
    (
        SessionStarted(data=SessionStartedData(session_id=SID, chunk_count=0, resumed=False)),
        f'{{"type": "session-started", "data": {{"session_id": "{SID}", "chunk_count": 0, '
        '"resumed": false}}',
    ),
    (
        SessionStopped(data=SessionStoppedData(session_id=SID, chunk_count=7, reason="audio-stop")),
        f'{{"type": "session-stopped", "data": {{"session_id": "{SID}", "chunk_count": 7, '
        '"reason": "audio-stop"}}',
    ),
    (
        WyomingError(data=ErrorData(text="libopus refuses the packet", code="invalid-opus")),
        '{"type": "error", "data": {"text": "libopus refuses the packet", "code": "invalid-opus"}}',
    ),
    (Pong(data=PongData(text="hi")), '{"type": "pong", "data": {"text": "hi"}}'),
    (
        AudioChunkHeader(data=AudioChunkData(rate=16000, width=2, channels=1), payload_length=640),
        '{"type": "audio-chunk", "data": {"rate": 16000, "width": 2, "channels": 1}, "payload_length": 640}',
    ),
]


@pytest.mark.parametrize(("event", "text"), GOLDEN, ids=[type(event).__name__ for event, _ in GOLDEN])
async def test_server_events_golden_and_read_by_the_wyoming_package(event: object, text: str) -> None:
    assert event.to_wire() == text  # type: ignore[attr-defined]
    sink = Collect()
    wire = WyomingTcpWire(
        asyncio.StreamReader(),
        sink,  # type: ignore[arg-type]
        header_limit=LIMIT,
        payload_limit=LIMIT,
        write_seconds=5,
    )
    await wire.send_str(text)
    payload = b"\x00" * 640 if isinstance(event, AudioChunkHeader) else b""
    await wire.send_bytes(payload)
    reader = asyncio.StreamReader()
    reader.feed_data(bytes(sink.data))
    reader.feed_eof()
    read = await async_read_event(reader)
    decoded = json.loads(text)
    assert read == Event(type=decoded["type"], data=decoded["data"], payload=payload or None)


@pytest.mark.parametrize(
    ("reply", "data"),
    [
        (InvalidApiKey(), {"text": "Invalid API key", "code": "invalid-api-key"}),
        (
            TooManySessions(max=3),
            {"text": "Too many concurrent sessions (max: 3)", "code": "too-many-sessions"},
        ),
        (
            ChunkTooLarge(size=5000, max_size=4096),
            {"text": "Chunk too large (size: 5000, max_size: 4096)", "code": "chunk-too-large"},
        ),
    ],
)
def test_refusals_every_protocol_shares_are_error_events_with_their_details(
    reply: ErrorReply, data: dict[str, str]
) -> None:
    assert json.loads(WyomingError.from_reply(reply).to_wire()) == {"type": "error", "data": data}
