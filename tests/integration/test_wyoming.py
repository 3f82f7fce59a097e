"""Wearables on `/ws` and on the Wyoming TCP port (embedded: in-process backends), with real peers:
the `wyoming` package as the TCP client, libopus packets as Omi devices make them, espeak-ng
speech. Recordings are compared sample for sample with what was sent (PCM) or with libopus's own
decode of the same packets (Opus)."""

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from tests.audio import speech
from tests.helpers import free_port
from tests.pipeline import read_wav, segment_paths, wait_finalized
from tests.servers import embedded_app
from tests.wearable import (
    FRAME,
    RATE,
    STOP,
    chunk_header,
    event,
    omi_packets,
    record_over_tcp,
    reference_decode,
    send_chunks,
    silence_packets,
    start,
)
from voxbus.common.runtime import STORE
from voxbus.common.runtime.logs import json_handler
from voxbus.common.store.base import StateStore


class Server:
    def __init__(self, base: str, app: web.Application, tcp_port: int, root: Path) -> None:
        self.base, self.app, self.tcp_port, self.root = base, app, tcp_port, root

    @property
    def store(self) -> StateStore:
        return self.app[STORE]

    async def recording(self, session_id: str) -> tuple[np.ndarray, dict[str, str]]:
        fields = await wait_finalized(self.store, session_id)
        samples, rate = read_wav(self.root / fields["file_path"])
        assert rate == RATE
        return samples[:, 0], fields

    async def rejected(self) -> dict[str, float]:
        async with aiohttp.ClientSession() as http, http.get(f"{self.base}/metrics") as response:
            text = await response.text()
        counts = {}
        for line in text.splitlines():
            if line.startswith("voxbus_ingest_rejected_messages_total{"):
                labels, value = line.rsplit(" ", 1)
                counts[labels[len("voxbus_ingest_rejected_messages_total") :]] = float(value)
        return counts


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[Server]:
    port = free_port()
    async with embedded_app(tmp_path, wyoming_port=port, max_message_size_bytes=4096) as (base, app):
        yield Server(base, app, port, tmp_path / "audio")


async def test_the_wyoming_package_over_tcp_records_speech_sample_for_sample(server: Server) -> None:
    pcm = speech(3.3, RATE)
    started, stopped = await record_over_tcp(server.tcp_port, pcm, 1024)
    assert stopped.type == "session-stopped"
    assert stopped.data["session_id"] == started.data["session_id"]
    assert stopped.data["chunk_count"] == -(-len(pcm) // 1024)
    recorded, fields = await server.recording(started.data["session_id"])
    assert np.array_equal(recorded, pcm[:, 0])
    assert fields["protocol"] == "wyoming-tcp"


@pytest.mark.parametrize("framing", ["wyoming-events", "bare-packets"])
async def test_omi_opus_over_ws_equals_the_libopus_decode_of_the_same_packets(
    server: Server, framing: str
) -> None:
    packets = omi_packets(4.0)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.base}/ws") as ws:
        if framing == "wyoming-events":
            await ws.send_str(start(format="opus"))
            session_id = (await event(ws))["data"]["session_id"]
            await send_chunks(ws, packets)
        else:
            await ws.send_bytes(packets[0])  # the first packet opens the session
            session_id = (await event(ws))["data"]["session_id"]
            for packet in packets[1:]:
                await ws.send_bytes(packet)
        await ws.send_str(STOP)
        stopped = await event(ws)
    assert stopped["data"] == {"session_id": session_id, "chunk_count": len(packets), "reason": "audio-stop"}
    recorded, fields = await server.recording(session_id)
    assert np.array_equal(recorded, reference_decode(packets))
    assert fields["format"] == "opus"


async def test_ble_headers_are_stripped_only_when_asked_and_3_byte_opus_frames_are_kept(
    server: Server,
) -> None:
    speech_packets, quiet = omi_packets(1.0), silence_packets(25)
    assert {len(packet) for packet in quiet} == {3}  # a genuine Opus frame the size of a BLE header
    packets = speech_packets[:20] + quiet + speech_packets[20:]
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.base}/ws") as ws:  # no stripping: every byte is Opus
            for packet in packets:
                await ws.send_bytes(packet)
            plain = (await event(ws))["data"]["session_id"]
            await ws.send_str(STOP)
            assert (await event(ws))["data"]["chunk_count"] == len(packets)
        async with http.ws_connect(f"{server.base}/ws?strip_header=true") as ws:
            for number, packet in enumerate(packets):
                await ws.send_bytes(number.to_bytes(2, "little") + b"\x00" + packet)
            stripped = (await event(ws))["data"]["session_id"]
            await ws.send_str(STOP)
            assert (await event(ws))["data"]["chunk_count"] == len(packets)
    for session_id in (plain, stripped):
        recorded, _ = await server.recording(session_id)
        assert np.array_equal(recorded, reference_decode(packets))


async def test_95_seconds_make_segments_of_30_30_30_5_that_concatenate_to_the_whole(server: Server) -> None:
    packets = omi_packets(95.0)
    assert len(packets) == 95 * 50
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.base}/ws") as ws:
        for packet in packets:
            await ws.send_bytes(packet)
        session_id = (await event(ws))["data"]["session_id"]
        await ws.send_str(STOP)
        await event(ws)
    recorded, fields = await server.recording(session_id)
    segments = [read_wav(path)[0][:, 0] for path in segment_paths(server.root, fields)]
    assert [len(segment) / RATE for segment in segments] == [30.0, 30.0, 30.0, 5.0]
    assert np.array_equal(np.concatenate(segments), recorded)
    assert np.array_equal(recorded, reference_decode(packets))


async def test_bad_input_gets_an_error_event_and_a_count_and_the_good_audio_goes_on(server: Server) -> None:
    good = omi_packets(2.0)
    before = await server.rejected()
    errors: list[str] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.base}/ws") as ws:
        await ws.send_str(start(format="opus"))
        session_id = (await event(ws))["data"]["session_id"]

        async def refused(*sent: str | bytes) -> None:
            for message in sent:
                await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
            answer = await event(ws)
            assert answer["type"] == "error"
            errors.append(answer["data"]["code"])

        await send_chunks(ws, good[:20])
        await refused(chunk_header(good[20]), '{"type": "ping"}')  # a header, then text: no payload
        assert (await event(ws))["type"] == "pong"  # the text after it is read as the next event
        await refused("{not json")
        await refused('{"type": "transcribe", "data": {}}')
        await refused('{"type": "audio-chunk", "payload_length": 6000}')
        await ws.send_bytes(b"\x01" * 6000)  # the refused payload: dropped, not taken as a packet
        await refused(b"\xff\xff\xff\xff")  # libopus: corrupted stream
        await refused(chunk_header(good[0], rate=8000), good[0])  # not the session's format
        await refused(b"\x00" * 5000)  # over the 4096-byte message limit
        await send_chunks(ws, good[20:])
        await ws.send_str(STOP)
        stopped = await event(ws)
    assert errors == [
        "payload-missing",
        "invalid-json",
        "unknown-event",
        "payload-too-large",
        "invalid-opus",
        "format-mismatch",
        "message-too-large",
    ]
    assert stopped["data"]["chunk_count"] == len(good)
    recorded, fields = await server.recording(session_id)
    assert fields["status"] == "completed"
    assert np.array_equal(recorded, reference_decode(good))
    after = await server.rejected()
    for code in errors:
        label = f'{{protocol="wyoming",reason="{code}"}}'
        assert after[label] - before.get(label, 0) == 1


async def test_audio_start_after_audio_stop_opens_the_next_session_on_the_same_socket(server: Server) -> None:
    packets, pcm = omi_packets(1.0), speech(1.0, RATE)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.base}/ws?codec=opus") as ws:
        await ws.send_str(start())
        first = (await event(ws))["data"]["session_id"]
        await send_chunks(ws, packets)
        await ws.send_str(start(format="pcm"))  # no audio-stop: this start ends the first
        assert (await event(ws))["data"]["reason"] == "audio-start"
        second = (await event(ws))["data"]["session_id"]
        for i in range(0, len(pcm), FRAME):
            await ws.send_str(chunk_header(pcm[i : i + FRAME].tobytes(), format="pcm"))
            await ws.send_bytes(pcm[i : i + FRAME].tobytes())
        await ws.send_str(STOP)
        assert (await event(ws))["data"]["session_id"] == second
        await ws.send_str(STOP)  # nothing open now
        assert (await event(ws))["data"]["code"] == "no-session"
    assert first != second
    assert np.array_equal((await server.recording(first))[0], reference_decode(packets))
    assert np.array_equal((await server.recording(second))[0], pcm[:, 0])


async def test_a_dropped_wearable_resumes_with_its_session_id_and_loses_nothing(server: Server) -> None:
    packets = omi_packets(3.0)
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{server.base}/ws")
        await ws.send_str(start(format="opus"))
        session_id = (await event(ws))["data"]["session_id"]
        await send_chunks(ws, packets[:90])
        dropped = ws._response.connection.transport  # type: ignore[union-attr]
        assert dropped is not None
        dropped.abort()  # the network went: no audio-stop, no close frame
        async with http.get(f"{server.base}/api/audio/sessions/{session_id}") as response:
            assert (await response.json())["status"] == "active"
        async with http.ws_connect(f"{server.base}/ws") as ws:
            await ws.send_str(start(format="opus", session_id=session_id))
            resumed = (await event(ws))["data"]
            assert resumed["resumed"] is True
            kept = resumed["chunk_count"]
            assert 0 < kept <= 90
            await send_chunks(ws, packets[kept:])  # everything after what the recording holds
            await ws.send_str(STOP)
            assert (await event(ws))["data"]["chunk_count"] == len(packets)
    recorded, _ = await server.recording(session_id)
    assert np.array_equal(recorded, reference_decode(packets))


async def test_a_resume_in_another_format_is_refused_and_the_session_stays_resumable(
    server: Server, ingest_log: io.StringIO
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.base}/ws") as ws:
            await ws.send_str(start(format="opus"))
            session_id = (await event(ws))["data"]["session_id"]
        async with http.ws_connect(f"{server.base}/ws") as ws:
            await ws.send_str(start(format="pcm", session_id=session_id))
            refused = await event(ws)
            assert refused["data"]["code"] == "format-mismatch"
            await ws.send_bytes(omi_packets(0.1)[0])  # audio waits for an audio-start that succeeds
            assert (await event(ws))["data"]["code"] == "no-session"
            await ws.send_str(start(format="opus", session_id=session_id))
            assert (await event(ws))["data"]["resumed"] is True
            await ws.send_str(start(format="opus", session_id="not-a-session"))
            assert (await event(ws))["data"]["reason"] == "audio-start"
            assert (await event(ws))["data"] == {
                "text": "Session not found (session_id: not-a-session)",
                "code": "session-not-found",
            }
    # the refusal is about that session: an operator following it by its id finds the line
    lines = [json.loads(line) for line in ingest_log.getvalue().splitlines()]
    [logged] = [line for line in lines if line.get("code") == "format-mismatch"]
    assert session_id in logged["reason"]


async def test_the_idle_reaper_finalizes_a_wearable_that_never_came_back(tmp_path: Path) -> None:
    packets = omi_packets(1.0)
    async with (
        embedded_app(tmp_path, connection_timeout_seconds=1.0) as (base, app),
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(f"{base}/ws") as ws:
            for packet in packets:
                await ws.send_bytes(packet)
            session_id = (await event(ws))["data"]["session_id"]
        fields = await wait_finalized(app[STORE], session_id)
        recorded, _ = read_wav(tmp_path / "audio" / fields["file_path"])
    assert fields["status"] == "completed"
    assert np.array_equal(recorded[:, 0], reference_decode(packets))


async def test_keys_on_the_ws_query_and_in_the_tcp_audio_start(tmp_path: Path) -> None:
    port = free_port()
    async with (
        embedded_app(tmp_path, api_key=("k1",), wyoming_port=port) as (base, _),
        aiohttp.ClientSession() as http,
    ):
        async with http.ws_connect(f"{base}/ws") as ws:
            assert await event(ws) == {
                "type": "error",
                "data": {"text": "Invalid API key", "code": "invalid-api-key"},
            }
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
        async with http.ws_connect(f"{base}/ws?token=k1") as ws:
            await ws.send_bytes(omi_packets(0.1)[0])
            assert (await event(ws))["type"] == "session-started"
        invalid_key = Event("error", {"text": "Invalid API key", "code": "invalid-api-key"})
        for before_the_key in (
            AudioChunk(rate=RATE, width=2, channels=1, audio=b"\x00\x00").event(),
            Event("ping", {"text": "keep me open"}),
            AudioStart(rate=RATE, width=2, channels=1).event(),  # no token
        ):
            async with AsyncTcpClient("127.0.0.1", port) as client:
                await client.write_event(before_the_key)
                assert (await client.read_event()) == invalid_key
                assert await client.read_event() is None  # closed
        async with AsyncTcpClient("127.0.0.1", port) as client:
            with_key = AudioStart(rate=RATE, width=2, channels=1).event()
            with_key.data["token"] = "k1"
            await client.write_event(with_key)
            started = await client.read_event()
            assert started is not None and started.type == "session-started"


async def test_tcp_bytes_that_cannot_be_framed_end_the_connection_but_not_the_audio(server: Server) -> None:
    pcm = speech(0.1, RATE)  # one chunk, under the 4096-byte limit
    reader, writer = await asyncio.open_connection("127.0.0.1", server.tcp_port)
    try:
        writer.write(b'{"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": 1}}\n')
        started = json.loads(await reader.readline())
        audio = pcm.tobytes()
        writer.write(b'{"type": "audio-chunk", "payload_length": %d}\n' % len(audio) + audio)
        writer.write(b"this is not an event\n")
        error = json.loads(await reader.readline())
        assert await reader.read() == b""  # then closed
    finally:
        writer.close()
    assert error == {"type": "error", "data": {"text": error["data"]["text"], "code": "invalid-json"}}
    session_id = started["data"]["session_id"]
    async with AsyncTcpClient("127.0.0.1", server.tcp_port) as client:
        resume = AudioStart(rate=RATE, width=2, channels=1).event()
        resume.data["session_id"] = session_id
        await client.write_event(resume)
        resumed = await client.read_event()
        assert resumed is not None
        assert resumed.data == {"session_id": session_id, "chunk_count": 1, "resumed": True}
        await client.write_event(AudioStop().event())
        assert (await client.read_event()) is not None
    recorded, _ = await server.recording(session_id)
    assert np.array_equal(recorded, pcm[:, 0])


async def test_ping_is_answered_and_a_bad_query_is_refused(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.base}/ws") as ws:
            await ws.send_str('{"type": "ping", "data": {"text": "still there?"}}\n')
            assert await event(ws) == {"type": "pong", "data": {"text": "still there?"}}
        for query in ("codec=aac", "strip_header=maybe", "sample_rate=11025", "user_id=" + "u" * 257):
            async with http.ws_connect(f"{server.base}/ws?{query}") as ws:
                refused: dict[str, Any] = await event(ws)
                assert refused["data"]["code"] == "invalid-wearable-parameter", query
                closing = await ws.receive()
                assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1008)


@pytest.fixture
def ingest_log() -> Iterator[io.StringIO]:
    """ingest's log lines as JSON, as a server writes them."""
    stream = io.StringIO()
    handler, logger = json_handler(stream), logging.getLogger("voxbus.ingest")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


async def test_each_log_line_names_the_session_on_at_the_time(
    server: Server, ingest_log: io.StringIO
) -> None:
    packet = omi_packets(0.1)[0]
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.base}/ws") as ws:
        await ws.send_str("{oops")  # before any session
        await event(ws)
        sessions = []
        for _ in range(2):  # two sessions, one after the other on one socket
            await ws.send_str(start(format="opus"))
            sessions.append((await event(ws))["data"]["session_id"])
            await ws.send_bytes(b"\xff\xff\xff\xff")
            await event(ws)
            await ws.send_bytes(packet)
            await ws.send_str(STOP)
            await event(ws)
    lines = [json.loads(line) for line in ingest_log.getvalue().splitlines()]
    named = [(line["msg"], line.get("session_id")) for line in lines if line["logger"].endswith("wyoming")]
    assert named == [
        ("message rejected", "-"),
        ("wearable session started", sessions[0]),
        ("message rejected", sessions[0]),
        ("wearable session started", sessions[1]),
        ("message rejected", sessions[1]),
    ]


# -- how connections end -------------------------------------------------------------------------


async def test_a_close_over_http_stops_the_session_and_closes_both_framings(server: Server) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{server.base}/ws") as ws:
            await ws.send_bytes(omi_packets(0.1)[0])
            session_id = (await event(ws))["data"]["session_id"]
            async with http.post(f"{server.base}/api/audio/sessions/{session_id}/close") as response:
                assert response.status == 200
            stopped = await event(ws)
            closing = await ws.receive()
            assert (closing.type, closing.data, closing.extra) == (
                aiohttp.WSMsgType.CLOSE,
                1000,
                "closed over HTTP",
            )
            assert stopped["data"]["reason"] == "closed over HTTP"
        async with AsyncTcpClient("127.0.0.1", server.tcp_port) as client:
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            started = await client.read_event()
            assert started is not None
            url = f"{server.base}/api/audio/sessions/{started.data['session_id']}/close"
            async with http.post(url) as response:
                assert response.status == 200
            stopped_tcp = await client.read_event()
            assert stopped_tcp is not None
            assert stopped_tcp.data["reason"] == "closed over HTTP"
            assert await client.read_event() is None  # then closed


async def test_an_idle_wearable_is_stopped_and_told_why(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, connection_timeout_seconds=0.5) as (base, app),
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/ws") as ws,
    ):
        await ws.send_bytes(omi_packets(0.1)[0])
        session_id = (await event(ws))["data"]["session_id"]
        stopped = await event(ws)  # nothing more is sent: the idle timeout
        closing = await ws.receive()
        assert (closing.type, closing.data, closing.extra) == (aiohttp.WSMsgType.CLOSE, 1000, "idle")
        assert stopped["data"] == {"session_id": session_id, "chunk_count": 1, "reason": "idle"}
        assert (await wait_finalized(app[STORE], session_id))["status"] == "completed"


async def test_a_shutdown_tells_a_tcp_wearable_and_leaves_its_session_resumable(tmp_path: Path) -> None:
    port = free_port()
    async with embedded_app(tmp_path, wyoming_port=port) as (base, app), aiohttp.ClientSession() as http:
        client = AsyncTcpClient("127.0.0.1", port)
        await client.connect()
        try:
            await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
            started = await client.read_event()
            assert started is not None
            await client.write_event(AudioChunk(RATE, 2, 1, audio=speech(0.1, RATE).tobytes()).event())
            await client.write_event(Event("ping", {}))  # answered after the chunk was read
            assert (await client.read_event()) == Event("pong", {"text": None})
            await app.shutdown()
            told = await client.read_event()
            assert await client.read_event() is None  # then closed
        finally:
            await client.disconnect()
        async with http.get(f"{base}/api/audio/sessions/{started.data['session_id']}") as response:
            session = await response.json()
    assert told == Event("error", {"text": "server restarting", "code": "server-restarting"})
    assert (session["status"], session["total_chunks"]) == ("active", 1)


async def test_the_first_packet_past_the_session_limit_is_told_to_come_back_later(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, max_concurrent_sessions=1) as (base, _),
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/ws") as first,
        http.ws_connect(f"{base}/ws") as second,
    ):
        await first.send_bytes(omi_packets(0.1)[0])
        assert (await event(first))["type"] == "session-started"
        await second.send_bytes(omi_packets(0.1)[0])
        refused = await event(second)
        closing = await second.receive()
    assert refused["data"] == {"text": "Too many concurrent sessions (max: 1)", "code": "too-many-sessions"}
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1013)


async def test_a_session_started_over_ws_resumes_over_tcp(server: Server) -> None:
    packets = omi_packets(1.0)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{server.base}/ws") as ws:
        await ws.send_str(start(format="opus"))
        session_id = (await event(ws))["data"]["session_id"]
        await send_chunks(ws, packets[:25])
    async with AsyncTcpClient("127.0.0.1", server.tcp_port) as client:
        resume = AudioStart(rate=RATE, width=2, channels=1).event()
        resume.data.update(format="opus", session_id=session_id)
        await client.write_event(resume)
        resumed = await client.read_event()
        assert resumed is not None
        assert resumed.data == {"session_id": session_id, "chunk_count": 25, "resumed": True}
        for packet in packets[25:]:
            chunk = AudioChunk(RATE, 2, 1, audio=packet).event()
            chunk.data["format"] = "opus"
            await client.write_event(chunk)
        await client.write_event(AudioStop().event())
        assert (await client.read_event()) is not None
    recorded, _ = await server.recording(session_id)
    assert np.array_equal(recorded, reference_decode(packets))
