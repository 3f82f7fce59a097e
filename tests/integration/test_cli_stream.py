"""`voxbus stream FILE` as a user runs it: the command in a process of its own against a running
voxbus. WAV, FLAC, MP3 and Opus in Ogg (encoded by FFmpeg's real encoders) are decoded on the
client and recorded; PCM and FLAC sample for sample. `--resume` sends only what the session
lacks; a server restart (close 1012) is resumed by the client itself, with nothing lost or
doubled; every error is one line and a non-zero exit status."""

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from tests.audio import encode, speech, wav_bytes
from tests.clients import record_with_aiohttp
from tests.helpers import eventually, free_port
from tests.pipeline import read_wav
from tests.servers import Process, embedded_app, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

KEY = "a-voxbus-api-key-of-32-bytes-or-more"
CHUNKS = 'voxbus_ingest_chunks_total{protocol="session"}'  # received by this process, live


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    def result(self) -> dict[str, str]:
        """The `key: value` lines it printed."""
        return dict(line.split(": ", 1) for line in self.out.splitlines())


async def stream(*args: str, **env: str) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voxbus.cli",
        "stream",
        *args,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VOXBUS_")}, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def ws_url(base: str) -> str:
    return f"{base.replace('http', 'ws')}/api/ws/audio"


async def info(base: str, session_id: str) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(f"{base}/api/audio/sessions/{session_id}") as r:
        body: dict[str, object] = await r.json()
        return body


async def test_wav_and_flac_are_recorded_sample_for_sample_mp3_and_opus_as_heard(tmp_path: Path) -> None:
    mono = speech(2.0, 16000)
    stereo = np.column_stack([speech(1.5, 44100)[:, 0], speech(1.5, 44100)[::-1, 0]])
    files = {
        "speech.wav": wav_bytes(mono, 16000),
        "speech.flac": encode(stereo, 44100, container="flac", codec="flac"),
        "speech.mp3": encode(speech(2.0, 22050), 22050, container="mp3", codec="libmp3lame"),
        "speech.opus": encode(speech(2.0, 48000), 48000, container="ogg", codec="libopus"),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    async with embedded_app(tmp_path) as (base, _):
        ran = {name: await stream(str(tmp_path / name), "--fast", "--url", ws_url(base)) for name in files}
        for name, done in ran.items():
            assert done.code == 0, f"{name}: {done.err}"
        results = {name: done.result() for name, done in ran.items()}

    wav = results["speech.wav"]
    assert (wav["status"], wav["chunks"], wav["sent"]) == (
        "completed",
        "20",
        "16000 Hz, 1 channel(s), 16-bit PCM",
    )
    recorded, rate = read_wav(tmp_path / "audio" / wav["file_path"])
    assert rate == 16000 and np.array_equal(recorded, mono)

    flac = results["speech.flac"]
    assert flac["sent"] == "44100 Hz, 2 channel(s), 16-bit PCM"
    recorded, rate = read_wav(tmp_path / "audio" / flac["file_path"])
    assert rate == 44100 and np.array_equal(recorded, stereo)

    for name, seconds in (("speech.mp3", 2.0), ("speech.opus", 2.0)):
        lossy = results[name]
        assert lossy["status"] == "completed"
        assert abs(float(lossy["duration_seconds"]) - seconds) <= seconds * 0.1, lossy
        assert lossy["ack_latency_ms"].startswith("p50 ")


async def test_a_rate_the_protocol_does_not_take_is_resampled_to_the_next_one_up(tmp_path: Path) -> None:
    soundfile.write(tmp_path / "32k.wav", speech(1.0, 32000)[:, 0], 32000, subtype="PCM_16")
    async with embedded_app(tmp_path) as (base, _):
        done = await stream(str(tmp_path / "32k.wav"), "--fast", "--url", ws_url(base))
    assert done.code == 0, done.err
    result = done.result()
    assert result["sent"] == "44100 Hz, 1 channel(s), 16-bit PCM (resampled from 32000 Hz)"
    assert abs(float(result["duration_seconds"]) - 1.0) <= 0.02


async def test_resume_sends_only_the_chunks_the_session_does_not_have(tmp_path: Path) -> None:
    audio = speech(3.0, 16000)
    (tmp_path / "take.wav").write_bytes(wav_bytes(audio, 16000))
    pcm = audio.tobytes()
    chunk = 3200  # 100 ms at 16 kHz mono: the command's chunks
    async with embedded_app(tmp_path) as (base, _):
        first = f"{ws_url(base)}?sample_rate=16000&format=pcm"
        replies = await record_with_aiohttp(
            first, [pcm[i : i + chunk] for i in range(0, 12 * chunk, chunk)], close=False
        )
        session_id = replies["hello"]["session_id"]
        done = await stream(
            str(tmp_path / "take.wav"), "--fast", "--resume", session_id, "--url", ws_url(base)
        )
        assert done.code == 0, done.err
        assert (done.result()["session_id"], done.result()["chunks"]) == (session_id, "30")
        fields = await info(base, session_id)
    recorded, _ = read_wav(tmp_path / "audio" / str(fields["file_path"]))
    assert recorded.tobytes() == pcm  # the first 12 chunks once, the other 18 after them


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
async def test_after_a_restart_it_resumes_by_itself_and_nothing_is_lost_or_doubled(
    stop: str, tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    """SIGTERM: the server answers what it read and closes with 1012. SIGKILL: the connection
    drops, and the chunk count the server saved may be behind what it acknowledged."""
    audio = speech(6.0, 16000)
    (tmp_path / "long.wav").write_bytes(wav_bytes(audio, 16000))
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("cli"))
    server = Process("up", env, tmp_path)
    server.start()
    try:
        await server.ready()
        command = asyncio.create_task(stream(str(tmp_path / "long.wav"), "--url", ws_url(server.url)))

        async def streaming() -> bool:
            async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as r:
                text = await r.text()
            chunks = [line for line in text.splitlines() if line.startswith(CHUNKS)]
            return bool(chunks) and float(chunks[0].split()[-1]) >= 10

        await eventually(streaming, what="the command a second into its file", timeout=30)
        await asyncio.to_thread(server.stop if stop == "SIGTERM" else server.kill)
        server.start()
        await server.ready()
        done = await command
        assert done.code == 0, f"{done.err}\n{server.log()}"
        result = done.result()
        assert (result["status"], result["chunks"], result["resumed"]) == ("completed", "60", "1"), (
            f"{done.out}\n{done.err}\n{server.log()}"
        )
        fields = await info(server.url, result["session_id"])
    finally:
        server.stop()
    recorded, _ = read_wav(tmp_path / "audio" / str(fields["file_path"]))
    assert recorded.tobytes() == audio.tobytes()


async def test_every_error_is_one_line_and_a_non_zero_exit_status(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "ok.wav").write_bytes(wav_bytes(speech(0.5, 16000), 16000))
    unknown = "0b8d5b52-3a43-4d1e-8f0e-7d3c2b1a0f9e"
    async with embedded_app(tmp_path, api_key=KEY) as (base, _):
        url = ws_url(base)
        missing = await stream(str(tmp_path / "absent.wav"), "--url", url)
        assert (missing.code, missing.err) == (2, f"voxbus: {tmp_path / 'absent.wav'}: no such file\n")
        text = await stream(str(tmp_path / "notes.txt"), "--url", url)
        assert text.code == 2 and text.err.startswith(f"voxbus: {tmp_path / 'notes.txt'}: not an audio file")
        refused = await stream(str(tmp_path / "ok.wav"), "--fast", "--url", url)
        assert (refused.code, refused.err) == (1, "voxbus: Invalid API key (close 1008)\n")
        gone = await stream(str(tmp_path / "ok.wav"), "--resume", unknown, "--url", url, VOXBUS_API_KEY=KEY)
        assert (gone.code, gone.err) == (1, "voxbus: Session not found (close 1008)\n")
        fine = await stream(str(tmp_path / "ok.wav"), "--fast", "--url", url, "--api-key", KEY)
        assert (fine.code, fine.result()["status"]) == (0, "completed")
        stereo = f"{url}?sample_rate=16000&channels=2&format=pcm&token={KEY}"
        other = (await record_with_aiohttp(stereo, [bytes(640)], close=False))["hello"]["session_id"]
        mismatch = await stream(str(tmp_path / "ok.wav"), "--resume", other, "--url", url, "--api-key", KEY)
        assert (mismatch.code, mismatch.err) == (
            1,
            f"voxbus: session {other} records pcm at 16000 Hz, 2 channel(s); ok.wav is sent as pcm at "
            "16000 Hz, 1 channel(s): it cannot continue that session\n",
        )
    nobody = f"ws://127.0.0.1:{free_port()}/api/ws/audio"
    unreachable = await stream(str(tmp_path / "ok.wav"), "--url", nobody)
    assert unreachable.code == 1 and unreachable.err.startswith(f"voxbus: cannot reach {nobody}: ")
    assert all(ran.err.count("\n") == 1 for ran in (missing, text, refused, gone, mismatch, unreachable))
    assert json.dumps(fine.result())  # the result is plain text lines
