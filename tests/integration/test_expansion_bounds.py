"""What one message can cost `voxbus up`: its output is split into bounded records, absurd declared
formats and codec bombs fail the session with a reason, the recording never outgrows
MAX_SESSION_DURATION_HOURS, and the in-process bus holds megabytes, not what passed through it."""

import asyncio
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import soundfile
from aiohttp import web

from tests.audio import tone_and_noise
from tests.clients import CLOSE
from tests.servers import embedded_app
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Key, SessionField, Topic
from voxbus.common.records import BusMessage
from voxbus.common.runtime import BUS, SETTINGS, STORE

MAX_PCM_RECORD = 256 * 1024  # the transcoder's record limit (a bound well under Kafka's 1 MiB)


def wav_header(*, rate: int, channels: int = 1, tag: int = 7, bits: int = 8) -> bytes:
    """A streaming WAV header (sizes unknown); tag 7 is µ-law."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    unknown = struct.pack("<I", 0xFFFFFFFF)
    return b"RIFF" + unknown + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + unknown


class Watched:
    """`voxbus up` whose PCM records are measured as the transcoder produces them."""

    def __init__(self, base: str, app: web.Application) -> None:
        self.base, self.app = base, app
        self.largest_pcm_record = 0
        bus = app[BUS]
        assert isinstance(bus, InProcessBus)
        self.bus = bus
        pcm_topic = app[SETTINGS].topic(Topic.AUDIO_PCM)
        send = bus.send

        async def measuring_send(topic: str, message: BusMessage, *, partition: int | None = None) -> Any:
            if topic == pcm_topic:
                self.largest_pcm_record = max(self.largest_pcm_record, len(message.value))
            return await send(topic, message, partition=partition)

        bus.send = measuring_send  # type: ignore[method-assign]

    async def record(self, query: str, chunks: list[bytes]) -> dict[str, Any]:
        """Stream the chunks, read every ack, close: the close reply and the session's record."""
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{self.base}/api/ws/audio?{query}") as ws,
        ):
            hello = await ws.receive_json()
            for chunk in chunks:
                await ws.send_bytes(chunk)
            acks = [await ws.receive_json(timeout=60) for _ in chunks]
            assert {a["message"] for a in acks} == {"Chunk processed successfully"}, acks[:3]
            await ws.send_str(CLOSE)
            closed = await ws.receive_json(timeout=60)
        fields = await self.app[STORE].hgetall(Key.SESSION + hello["session_id"])
        return {"closed": closed, "fields": fields}

    def stored_bytes(self) -> int:
        return sum(
            f.stat().st_size for f in (self.app[SETTINGS].audio_storage_path).rglob("*") if f.is_file()
        )

    def recorded_frames(self, session_id: str) -> int:
        path = self.app[SETTINGS].audio_storage_path / f"{session_id}.wav"
        return int(soundfile.info(str(path)).frames)


@pytest.fixture
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Watched]:
    overrides = getattr(request, "param", {})
    async with embedded_app(tmp_path, **overrides) as (base, app):
        yield Watched(base, app)


async def test_a_wav_header_declaring_1000_hz_fails_the_session_writing_nothing_big(server: Watched) -> None:
    # 1000 Hz 8-bit µ-law to a 96 kHz stereo session: each input byte was 384 bytes of PCM
    message = wav_header(rate=1000) + bytes(range(256)) * 512
    result = await server.record("sample_rate=96000&channels=2&format=wav", [message])
    assert result["closed"]["status"] == "error"
    assert result["fields"][SessionField.STATUS] == "error"
    assert "sample rate of 1000 Hz" in result["fields"][SessionField.ERROR]
    assert server.largest_pcm_record <= MAX_PCM_RECORD
    assert server.stored_bytes() < 64 * 1024


async def test_one_chunk_that_expands_is_split_into_bounded_pcm_records(server: Watched) -> None:
    # a real 8 kHz µ-law WAV to a 96 kHz stereo session: 48 bytes of PCM per byte sent
    frames = 256 * 1024
    message = wav_header(rate=8000) + bytes(range(256)) * (frames // 256)
    result = await server.record("sample_rate=96000&channels=2&format=wav", [message])
    assert result["closed"]["status"] == "completed", result
    assert result["closed"]["duration_seconds"] == pytest.approx(frames / 8000, abs=0.01)
    assert 0 < server.largest_pcm_record <= MAX_PCM_RECORD


async def test_two_byte_opus_packets_that_say_120_ms_fail_the_session(server: Watched) -> None:
    # TOC: CELT fullband 20 ms, code 3; then 6 frames, CBR, no padding: 6 empty frames = 120 ms
    packet = bytes([31 << 3 | 3, 6])
    result = await server.record("sample_rate=48000&channels=1&format=opus", [packet] * 400)
    assert result["closed"]["status"] == "error"
    assert "ms per byte" in result["fields"][SessionField.ERROR]
    session_id = result["closed"]["session_id"]
    assert server.recorded_frames(session_id) <= 4 * 48000  # 400 packets used to make 48 s


@pytest.mark.parametrize("server", [{"max_session_duration_hours": 0.001}], indirect=True)
async def test_decoded_audio_never_outgrows_the_max_session_duration(server: Watched) -> None:
    # 8 s of audio sent at once to a session allowed 3.6 s (0.001 h)
    source = tone_and_noise(8.0, 16000)
    chunks = [source[i : i + 32000].tobytes() for i in range(0, len(source), 32000)]
    result = await server.record("sample_rate=16000&channels=1&format=pcm", chunks)
    assert result["closed"]["status"] == "error"
    assert "MAX_SESSION_DURATION_HOURS" in result["fields"][SessionField.ERROR]
    session_id = result["closed"]["session_id"]
    assert server.recorded_frames(session_id) == 57600  # exactly 3.6 s at 16 kHz


async def test_the_bus_holds_megabytes_not_the_audio_that_passed_through_it(server: Watched) -> None:
    chunk = tone_and_noise(32.768, 16000).tobytes()[: 1 << 20]  # 1 MiB of PCM, 32.768 s
    result = await server.record("sample_rate=16000&channels=1&format=pcm", [chunk] * 40)
    assert result["closed"]["status"] == "completed"
    assert server.largest_pcm_record <= MAX_PCM_RECORD
    # every group commits after its batch: once a second session went through, the first one's
    # records were committed past
    assert (await server.record("sample_rate=16000&channels=1&format=pcm", [bytes(640)]))["closed"]
    assert server.bus.retained_bytes() <= 4 * 1024 * 1024


@pytest.mark.parametrize("server", [{"memory_bus_max_unread_bytes": 1 << 20}], indirect=True)
async def test_clients_uploading_faster_than_the_writer_saves_are_slowed_not_buffered(
    server: Watched,
) -> None:
    # four clients send 64 KiB chunks as fast as their acks come: the bus never holds much more
    # than what its readers have still to read, a MiB a partition here
    chunk = tone_and_noise(2.048, 16000).tobytes()[: 64 * 1024]
    held: list[int] = []

    async def flood() -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{server.base}/api/ws/audio?sample_rate=16000&format=pcm") as ws,
        ):
            await ws.receive_json()
            for _ in range(120):
                await ws.send_bytes(chunk)
                assert (await ws.receive_json(timeout=60))["message"] == "Chunk processed successfully"
                held.append(server.bus.retained_bytes())

    await asyncio.gather(*(flood() for _ in range(4)))
    assert max(held) <= 12 * 1024 * 1024, max(held)
