"""Every way a session can end, as the client sees it through `/api/ws/audio` (embedded): a
failure is said plainly, with the decoder's reason, in the close reply and in the session
record; audio a client was told was accepted is in the recording."""

import io
import struct
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from tests.audio import chunked, tone_and_noise, wav_bytes
from tests.clients import record_with_aiohttp
from tests.servers import embedded
from voxbus.transcoder.pipeline import SessionPipeline

RATE = 16000


async def session_info(base: str, session_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/audio/sessions/{session_id}") as r:
        assert r.status == 200
        info: dict[str, Any] = await r.json()
        return info


async def recording(base: str, session_id: str) -> npt.NDArray[np.int16]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/api/audio/sessions/{session_id}/audio") as r,
    ):
        assert r.status == 200
        samples, rate = soundfile.read(io.BytesIO(await r.read()), dtype="int16", always_2d=True)
    assert rate == RATE
    return samples.reshape(-1)


async def stream(base: str, chunks: list[bytes]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Record `chunks` as a wav session and close it: (close reply, session record)."""
    result = await record_with_aiohttp(f"{base}/api/ws/audio?sample_rate={RATE}&format=wav", chunks)
    assert [a["message"] for a in result["acks"]] == ["Chunk processed successfully"] * len(chunks)
    assert result["close_code"] == 1000
    closed = result["closed"]
    return closed, await session_info(base, closed["session_id"])


def assert_failed(closed: dict[str, Any], info: dict[str, Any], reason: str) -> None:
    assert closed["message"] == "Session failed"
    assert closed["status"] == "error"
    assert reason in closed["error"]
    assert info["status"] == "error"
    assert info["error"] == closed["error"]
    assert info["close_reason"] == closed["error"]


async def test_undecodable_audio_is_answered_as_a_failure_with_its_reason(tmp_path: Path) -> None:
    async with embedded(tmp_path) as base:
        closed, info = await stream(base, [b"this is not a wav file, " * 20])
        assert_failed(closed, info, "not a RIFF/WAVE stream")
        assert closed["duration_seconds"] == 0.0
        assert len(await recording(base, closed["session_id"])) == 0


@pytest.mark.parametrize(
    ("after_riff_wave", "reason"),
    [
        (bytes(range(256)) * 4, "no RIFF chunk at byte 12"),
        (b"JUNK" + struct.pack("<I", 4) + b"junk", "no WAV 'fmt ' and 'data' chunks in the 24 bytes"),
    ],
    ids=["binary-garbage", "no-fmt-at-the-end"],
)
async def test_riff_wave_then_garbage_fails_with_a_reason(
    tmp_path: Path, after_riff_wave: bytes, reason: str
) -> None:
    async with embedded(tmp_path) as base:
        closed, info = await stream(base, [b"RIFF\x00\x00\x00\x00WAVE" + after_riff_wave])
        assert_failed(closed, info, reason)
        assert info["duration_seconds"] == 0.0


async def test_audio_past_a_short_wav_data_size_is_all_recorded(tmp_path: Path) -> None:
    source = tone_and_noise(2.0, RATE)
    stream_bytes = bytearray(wav_bytes(source, RATE))
    data = stream_bytes.find(b"data")
    struct.pack_into("<I", stream_bytes, data + 4, 10)  # the header says 10 bytes: 5 samples
    async with embedded(tmp_path) as base:
        closed, info = await stream(base, chunked(bytes(stream_bytes), 4096))
        assert (closed["message"], closed["status"]) == ("Session closed successfully", "completed")
        assert closed["duration_seconds"] == 2.0
        assert (info["status"], info["close_reason"], info["error"]) == ("completed", "client", None)
        np.testing.assert_array_equal(await recording(base, closed["session_id"]), source.reshape(-1))


async def test_float_wav_with_nan_is_recorded_with_nan_as_silence(tmp_path: Path) -> None:
    # 48 kHz stereo into a 16 kHz mono session: mixed and resampled, where a NaN would spread
    signal = (tone_and_noise(2.0, 48000, 2) / 32768.0).astype(np.float32)
    signal[1000:1100] = np.nan
    signal[5000, 0] = np.inf
    clean = signal.copy()
    clean[1000:1100] = 0.0
    clean[5000, 0] = 1.0
    pipeline = SessionPipeline.for_codec("wav", rate=RATE, channels=1)
    expected = pipeline.push(wav_bytes(clean, 48000, "FLOAT")) + pipeline.finish()
    async with embedded(tmp_path) as base:
        closed, info = await stream(base, chunked(wav_bytes(signal, 48000, "FLOAT"), 4096))
        assert (closed["status"], info["status"]) == ("completed", "completed")
        got = await recording(base, closed["session_id"])
    assert got.tobytes() == expected
    assert np.abs(got.astype(np.int32)).mean() > 1000  # the tone, not silence


async def test_a_session_the_pipeline_fails_is_told_at_once_without_closing_it(tmp_path: Path) -> None:
    # the client never asks to close: it is told as soon as the recording failed, with the reason,
    # instead of being acked on for audio that is dropped
    fmt = struct.pack("<HHIIHH", 7, 1, 1000, 1000, 1, 8)  # 1000 Hz 8-bit µ-law: refused
    header = b"RIFF" + b"\xff" * 4 + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + b"\xff" * 4
    async with (
        embedded(tmp_path) as base,
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{base}/api/ws/audio?sample_rate=96000&channels=2&format=wav") as ws,
    ):
        session_id = (await ws.receive_json())["session_id"]
        await ws.send_bytes(header + bytes(4096))
        ack = await ws.receive_json(timeout=10)
        failed = await ws.receive_json(timeout=30)
        closing = await ws.receive(timeout=10)
        info = await session_info(base, session_id)
    assert ack["message"] == "Chunk processed successfully"  # durable: the failure comes later
    assert_failed(failed, info, "sample rate of 1000 Hz")
    assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 1000)
