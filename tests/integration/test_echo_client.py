"""`voxbus echo-client` as a user runs it: a real process against a real voxbus (embedded in this
process, `/ws/echo` with a 300 ms delay), WAV files in and out, commands written to its stdin."""

import asyncio
import contextlib
import os
import re
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile

from tests.audio import Int16, speech, wav_bytes
from tests.servers import embedded

pytestmark = pytest.mark.timeout(30)

CLIENT = [sys.executable, "-m", "voxbus.cli", "echo-client"]
RATE = 16000
CHUNK = 4096  # samples, the server's config
DELAY_MS = 300
COUNTS = re.compile(r"chunks sent: (\d+), chunks received: (\d+)")
DELAYS = re.compile(r"echo delay: median ([\d.]+) ms, max ([\d.]+) ms")
PING = re.compile(r"ping round trip: [\d.]+ ms")


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str

    def counts(self) -> tuple[int, int]:
        match = COUNTS.search(self.stdout)
        assert match, self.stdout
        return int(match[1]), int(match[2])


class Client:
    """One `voxbus echo-client` process: lines to its stdin, its stderr read as it comes."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.stderr_lines: list[str] = []

    async def connected(self) -> float:
        """When the client logged the server's config (it sends from then on); needs `-v`."""
        assert self.process.stderr is not None
        while line := (await asyncio.wait_for(self.process.stderr.readline(), 15)).decode():
            self.stderr_lines.append(line)
            if "config:" in line:
                return time.monotonic()
        raise AssertionError(f"the client exited before connecting: {''.join(self.stderr_lines)}")

    async def command(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{line}\n".encode())
        await self.process.stdin.drain()

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()

    def running(self) -> bool:
        return self.process.returncode is None

    async def finish(self, timeout: float = 15.0) -> Finished:
        stdout, stderr = await asyncio.wait_for(self.process.communicate(), timeout)
        assert self.process.returncode is not None
        return Finished(
            self.process.returncode, stdout.decode(), "".join(self.stderr_lines) + stderr.decode()
        )


@contextlib.asynccontextmanager
async def client(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Client]:
    process = await asyncio.create_subprocess_exec(
        *CLIENT,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    try:
        yield Client(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.communicate()


async def run_client(*args: str, env: dict[str, str] | None = None) -> Finished:
    """The client with nothing on its stdin (closed at once, as in CI), to the end."""
    async with client(*args, env=env) as running:
        running.close_stdin()
        return await running.finish()


def echo_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws/echo"


def write_wav(
    path: Path, samples: npt.NDArray[np.generic], rate: int = RATE, subtype: str = "PCM_16"
) -> Path:
    path.write_bytes(wav_bytes(samples, rate, subtype))
    return path


def read_samples(path: Path) -> Int16:
    info = soundfile.info(path)
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, RATE)
    samples, _ = soundfile.read(path, dtype="int16")
    return np.asarray(samples, dtype=np.int16)


async def test_streams_a_wav_in_real_time_through_stop_and_resume_and_saves_the_echo_exactly(
    tmp_path: Path,
) -> None:
    audio = speech(3, RATE)
    source = write_wav(tmp_path / "speech.wav", audio)
    output = tmp_path / "out.wav"
    async with embedded(tmp_path, echo_delay_ms=DELAY_MS) as base:
        async with client(echo_url(base), "--file", str(source), "--output", str(output), "-v") as running:
            started = await running.connected()
            # a user who stops mid-stream and resumes: the pause, in real time, is the scenario
            await asyncio.sleep(1.0)
            await running.command("stop")
            await asyncio.sleep(0.5)
            await running.command("resume")
            running.close_stdin()  # the end of stdin is not quit: the client goes on to the last echo
            result = await running.finish()
        elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    chunks = -(-len(audio) // CHUNK)
    assert result.counts() == (chunks, chunks)
    assert np.array_equal(read_samples(output), audio[:, 0])
    delays = DELAYS.search(result.stdout)
    assert delays, result.stdout
    median, longest = float(delays[1]), float(delays[2])
    assert DELAY_MS - 20 <= median <= longest < DELAY_MS + 1500
    assert PING.search(result.stdout), result.stdout
    # real time: 11 chunk periods (2.8 s) of sending, then the echo delay; a burst would take 0.3 s
    assert elapsed >= (chunks - 1) * CHUNK / RATE + DELAY_MS / 1000 - 0.1


async def test_stop_holds_the_stream_and_quit_closes_at_once(tmp_path: Path) -> None:
    audio = speech(2, RATE)
    source = write_wav(tmp_path / "speech.wav", audio)
    output = tmp_path / "out.wav"
    async with embedded(tmp_path, echo_delay_ms=DELAY_MS) as base:
        async with client(echo_url(base), "--file", str(source), "--output", str(output), "-v") as running:
            await running.connected()
            await running.command("stop")
            await asyncio.sleep(2.5)  # longer than the whole file: had it gone on, the client would be done
            assert running.running()
            quit_at = time.monotonic()
            await running.command("quit")
            result = await running.finish()
        quit_took = time.monotonic() - quit_at
    assert result.returncode == 0, result.stderr
    sent, received = result.counts()
    assert 1 <= sent < len(audio) // CHUNK
    assert received == sent  # echoes kept coming while stopped
    assert quit_took < 3.0
    assert np.array_equal(read_samples(output), audio[: sent * CHUNK, 0])


async def test_wait_for_start_sends_nothing_until_start_and_unknown_commands_list_the_commands(
    tmp_path: Path,
) -> None:
    audio = speech(1, RATE)
    source = write_wav(tmp_path / "speech.wav", audio)
    async with (
        embedded(tmp_path, echo_delay_ms=DELAY_MS) as base,
        client(echo_url(base), "--file", str(source), "--wait-for-start", "-v") as running,
    ):
        await running.connected()
        await running.command("louder")
        await asyncio.sleep(1.5)  # longer than the file plus the delay
        assert running.running()
        await running.command("start")
        running.close_stdin()
        result = await running.finish()
    assert result.returncode == 0, result.stderr
    chunks = -(-len(audio) // CHUNK)
    assert result.counts() == (chunks, chunks)
    assert "unknown command 'louder'; commands: start, stop, resume, quit" in result.stderr


async def test_api_key_wrong_or_missing_exits_1_naming_the_key_and_the_right_one_streams(
    tmp_path: Path,
) -> None:
    source = write_wav(tmp_path / "speech.wav", speech(0.5, RATE))
    async with embedded(tmp_path, api_key="secret", echo_delay_ms=DELAY_MS) as base:
        url = echo_url(base)
        wrong = await run_client(url, "--file", str(source), "--api-key", "not-the-secret")
        missing = await run_client(url, "--file", str(source))
        right = await run_client(url, "--file", str(source), "--api-key", "secret")
    for refused in (wrong, missing):
        assert refused.returncode == 1
        assert "refused the API key (close 4001 'Invalid API key'); pass it with --api-key" in refused.stderr
        assert "Traceback" not in refused.stderr
    assert right.returncode == 0, right.stderr
    assert right.counts() == (2, 2)
    assert PING.search(right.stdout), right.stdout


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("stereo.wav", "stereo.wav has 2 channels; the echo protocol takes mono"),
        ("float.wav", "float.wav holds FLOAT samples; the echo protocol takes 16-bit PCM (PCM_16)"),
        ("8k.wav", "8k.wav is 8000 Hz; the server expects 16000 Hz (resample it)"),
        ("notes.txt", "cannot read"),
        ("missing.wav", "missing.wav: no such file"),
    ],
)
async def test_an_unusable_file_exits_2_naming_what_is_wrong(
    tmp_path: Path, name: str, expected: str
) -> None:
    write_wav(tmp_path / "stereo.wav", speech(0.5, RATE, channels=2))
    write_wav(tmp_path / "float.wav", speech(0.5, RATE).astype(np.float32) / 32768, subtype="FLOAT")
    write_wav(tmp_path / "8k.wav", speech(0.5, 8000), rate=8000)
    (tmp_path / "notes.txt").write_text("not audio\n")
    async with embedded(tmp_path, echo_delay_ms=DELAY_MS) as base:
        result = await run_client(echo_url(base), "--file", str(tmp_path / name))
    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


async def test_without_file_or_sounddevice_exits_2_before_connecting(tmp_path: Path) -> None:
    # sounddevice is not a dependency; a stand-in that fails to import keeps this true where it is installed
    (tmp_path / "sounddevice.py").write_text('raise ImportError("sounddevice stand-in")\n')
    path = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    result = await run_client("ws://127.0.0.1:9/ws/echo", env={"PYTHONPATH": path})  # nothing listens
    assert result.returncode == 2
    assert "no microphone support: install sounddevice or use --file" in result.stderr
