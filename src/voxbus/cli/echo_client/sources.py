"""Where the audio comes from: a WAV file at real time, or the microphone (sounddevice)."""

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any, Protocol

from voxbus.cli.echo_client.commands import Controls
from voxbus.cli.echo_client.errors import UsageError
from voxbus.cli.echo_client.wav import SAMPLE_WIDTH, WavInput

log = logging.getLogger("voxbus.echo_client")

Send = Callable[[bytes], Awaitable[None]]


class Source(Protocol):
    async def run(self, send: Send, controls: Controls) -> None:
        """Send audio while `controls.sending` is set; return when there is no more."""


class FileSource:
    """A WAV file's chunks, one every chunk duration, paced against the monotonic clock."""

    def __init__(self, wav: WavInput, *, chunk_samples: int) -> None:
        self._chunks = wav.chunks(chunk_samples)
        self._rate = wav.rate

    async def run(self, send: Send, controls: Controls) -> None:
        due = time.monotonic()
        for chunk in self._chunks:
            due = await _wait_turn(due, controls)
            await send(chunk)
            due += len(chunk) / SAMPLE_WIDTH / self._rate  # from the schedule, not the clock: no drift


async def _wait_turn(due: float, controls: Controls) -> float:
    """Wait until sending is on and `due` has come; the schedule restarts from a resume."""
    while True:
        if not controls.sending.is_set():
            await controls.sending.wait()
            due = max(due, time.monotonic())
        delay = due - time.monotonic()
        if delay <= 0:
            return due
        await asyncio.sleep(delay)


class MicrophoneSource:
    """16-bit mono capture with sounddevice; what is captured while stopped is dropped."""

    def __init__(self, sounddevice: ModuleType, *, rate: int, chunk_samples: int) -> None:
        self._sounddevice = sounddevice
        self._rate = rate
        self._chunk_samples = chunk_samples

    async def run(self, send: Send, controls: Controls) -> None:
        loop = asyncio.get_running_loop()
        captured: asyncio.Queue[bytes] = asyncio.Queue()

        def on_audio(data: Any, frames: int, when: Any, status: Any) -> None:  # PortAudio's thread
            if status:
                log.warning("microphone: %s", status)
            loop.call_soon_threadsafe(captured.put_nowait, bytes(data))

        with self._open(on_audio):
            while True:
                chunk = await captured.get()
                if controls.sending.is_set():
                    await send(chunk)

    def _open(self, callback: Callable[..., None]) -> contextlib.AbstractContextManager[object]:
        try:
            stream: contextlib.AbstractContextManager[object] = self._sounddevice.RawInputStream(
                samplerate=self._rate,
                channels=1,
                dtype="int16",
                blocksize=self._chunk_samples,
                callback=callback,
            )
        except Exception as exc:  # sounddevice.PortAudioError, or ValueError for an unknown device
            raise UsageError(f"cannot open the microphone: {exc}") from exc
        return stream


def import_sounddevice() -> ModuleType:
    try:
        return importlib.import_module("sounddevice")
    except (ImportError, OSError) as exc:  # OSError: installed, but the PortAudio library is missing
        log.info("sounddevice: %s", exc)
        raise UsageError("no microphone support: install sounddevice or use --file") from exc
