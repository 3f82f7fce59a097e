"""`voxbus echo-client`: the client of the delayed-echo endpoint `/ws/echo` (seed 4, API.md).

It streams a WAV file (or the microphone) to the server at real time, writes what comes back to a
WAV file, and reports how late each chunk came back. It replaces the seed's PyAudio client and
keeps its stdin commands: start, stop, resume, quit.
"""

import argparse
import asyncio
import contextlib
import importlib
import json
import logging
import os
import signal
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Final, Protocol
from urllib.parse import urlsplit

import aiohttp

# soundfile ships no type information; it is used only by read_wav and WavOutput below.
import soundfile  # type: ignore[import-untyped]

log = logging.getLogger("voxbus.echo_client")

COMMANDS: Final = ("start", "stop", "resume", "quit")
PING: Final = json.dumps({"type": "ping"})
INVALID_API_KEY: Final = 4001  # the seed server's close code for a wrong key
CONNECT_TIMEOUT_S: Final = 10.0
CONFIG_TIMEOUT_S: Final = 10.0
LATE_ECHO_GRACE_S: Final = 5.0  # after the file: how long past the last expected echo to wait
TASK_STOP_TIMEOUT_S: Final = 5.0
SAMPLE_WIDTH: Final = 2

Send = Callable[[bytes], Awaitable[None]]


class ClientError(Exception):
    """What went wrong, in one line for the user; `status` is the exit status."""

    status: ClassVar[int] = 1


class UsageError(ClientError):
    """A problem with the command line or the input file (exit status 2)."""

    status = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    url: str
    file: Path | None
    output: Path | None
    api_key: str | None
    chunk_samples: int | None
    wait_for_start: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamConfig:
    """The server's first message: `{"type": "config", "data": {...}}`."""

    _TYPE: ClassVar[str] = "config"
    sample_rate: int
    chunk_size: int
    channels: int
    sample_width: int

    @classmethod
    def from_wire(cls, text: str) -> "StreamConfig":
        try:
            message = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ClientError(f"the server's first message is not JSON: {text[:200]!r}") from exc
        data = message.get("data") if isinstance(message, dict) else None
        if not isinstance(message, dict) or message.get("type") != cls._TYPE or not isinstance(data, dict):
            raise ClientError(f"expected a config message first, got {text[:200]!r}")
        values = [data.get(name) for name in ("sample_rate", "chunk_size", "channels", "sample_width")]
        ints = [value for value in values if type(value) is int and value > 0]
        if len(ints) != len(values):
            raise ClientError(f"the config message has invalid fields: {data!r}")
        rate, chunk, channels, width = ints
        config = cls(sample_rate=rate, chunk_size=chunk, channels=channels, sample_width=width)
        if (config.channels, config.sample_width) != (1, SAMPLE_WIDTH):
            raise ClientError(
                f"the server streams {config.channels} channel(s) of {config.sample_width}-byte samples; "
                "this client speaks 16-bit mono"
            )
        return config


@dataclass(frozen=True, slots=True, kw_only=True)
class WavInput:
    """A mono 16-bit PCM WAV file: its rate and its samples as s16le bytes."""

    path: Path
    rate: int
    pcm: bytes

    def check_rate(self, rate: int) -> None:
        if self.rate != rate:
            raise UsageError(f"{self.path} is {self.rate} Hz; the server expects {rate} Hz (resample it)")

    def chunks(self, samples: int) -> list[bytes]:
        size = samples * SAMPLE_WIDTH
        return [self.pcm[start : start + size] for start in range(0, len(self.pcm), size)]


def read_wav(path: Path) -> WavInput:
    """The file's audio, or a UsageError that names what is wrong with it."""
    if not path.is_file():  # libsndfile would say only "System error"
        raise UsageError(f"{path}: no such file")
    try:
        with soundfile.SoundFile(path) as wav:
            kind: str = wav.format
            channels: int = wav.channels
            subtype: str = wav.subtype
            if kind not in ("WAV", "WAVEX"):
                raise UsageError(f"{path} is {kind}, not WAV")
            if channels != 1:
                raise UsageError(f"{path} has {channels} channels; the echo protocol takes mono")
            if subtype != "PCM_16":
                raise UsageError(
                    f"{path} holds {subtype} samples; the echo protocol takes 16-bit PCM (PCM_16)"
                )
            rate: int = wav.samplerate
            pcm = bytes(wav.buffer_read(dtype="int16"))
    except soundfile.LibsndfileError as exc:
        raise UsageError(f"cannot read {path} as a WAV file: {exc}") from exc
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return WavInput(path=path, rate=rate, pcm=pcm)


class WavOutput:
    """The echoed audio as a 16-bit mono WAV file, valid once closed."""

    def __init__(self, path: Path, rate: int) -> None:
        try:
            self._file = soundfile.SoundFile(
                path, "w", samplerate=rate, channels=1, subtype="PCM_16", format="WAV"
            )
        except (soundfile.LibsndfileError, OSError) as exc:
            raise UsageError(f"cannot write {path}: {exc}") from exc
        self._odd = b""  # a byte of a sample whose other byte is in the next message

    def write(self, data: bytes) -> None:
        # A few KB at a time on a local disk: quicker than handing each write to a thread.
        data = self._odd + data
        whole = len(data) - len(data) % SAMPLE_WIDTH
        self._odd = data[whole:]
        if whole:
            self._file.buffer_write(data[:whole], dtype="int16")

    def close(self) -> None:
        self._file.close()


class Tally:
    """What was sent and what came back, matched in order.

    Chunk i is back when every byte up to its end has come back: the same as matching message i to
    message i when the server echoes chunks whole, and still right if it splits or joins them.
    """

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self._sent_ends: list[int] = []
        self._sent_at: list[float] = []
        self._delays: list[float] = []
        self.sent_bytes = 0
        self.received_bytes = 0
        self._ping_at: float | None = None
        self._ping_rtt: float | None = None

    def sent(self, size: int, at: float) -> None:
        self.sent_bytes += size
        self._sent_ends.append(self.sent_bytes)
        self._sent_at.append(at)

    def received(self, size: int, at: float) -> None:
        self.received_bytes += size
        while (
            len(self._delays) < len(self._sent_ends)
            and self._sent_ends[len(self._delays)] <= self.received_bytes
        ):
            self._delays.append(at - self._sent_at[len(self._delays)])
        self.changed.set()

    def ping_sent(self, at: float) -> None:
        self._ping_at = at

    def pong(self, at: float) -> None:
        if self._ping_at is not None and self._ping_rtt is None:
            self._ping_rtt = at - self._ping_at

    def all_back(self) -> bool:
        return self.received_bytes >= self.sent_bytes

    def last_echo_due(self) -> float:
        """When the last chunk should come back, judging by the delays seen so far."""
        last_sent = self._sent_at[-1] if self._sent_at else time.monotonic()
        return last_sent + max(self._delays, default=0.0)

    def summary(self) -> str:
        return (
            f"chunks sent: {len(self._sent_ends)}, chunks received: {len(self._delays)} "
            f"({self.received_bytes} of {self.sent_bytes} bytes back)\n"
            f"echo delay: {self._delay_text()}\n"
            f"ping round trip: {_ms(self._ping_rtt) if self._ping_rtt is not None else 'no pong'}\n"
        )

    def _delay_text(self) -> str:
        if not self._delays:
            return "no chunk came back"
        return f"median {_ms(statistics.median(self._delays))}, max {_ms(max(self._delays))}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


class Controls:
    """The state the stdin commands change: whether to send, and whether to quit."""

    def __init__(self, *, sending: bool) -> None:
        self.sending = asyncio.Event()
        self.quit = asyncio.Event()
        if sending:
            self.sending.set()

    def apply(self, line: str) -> None:
        command = line.strip().lower()
        if not command:
            return
        if command in ("start", "resume"):
            self.sending.set()
        elif command == "stop":
            self.sending.clear()
        elif command == "quit":
            self.quit.set()
        else:
            sys.stderr.write(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}\n")
            return
        log.info("command: %s", command)


def read_stdin_lines(loop: asyncio.AbstractEventLoop, lines: "asyncio.Queue[str | None]") -> None:
    """Deliver stdin's lines to `lines` from a daemon thread, then None at end of input.

    A daemon thread, not the loop's executor (asyncio.run joins that at exit, so a read blocked on
    a terminal would hang the exit) nor connect_read_pipe (it sets O_NONBLOCK on a terminal that
    stdout shares, and refuses regular files). os.read takes no Python lock, so the thread blocked
    in it does not stop the interpreter from exiting.
    """

    def deliver(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the client is exiting
            loop.call_soon_threadsafe(lines.put_nowait, line)

    def read() -> None:
        pending = b""
        while True:
            try:
                block = os.read(0, 4096)
            except OSError:  # no stdin at all
                block = b""
            if not block:
                break
            *complete, pending = (pending + block).split(b"\n")
            for line in complete:
                deliver(line.decode(errors="replace"))
        if pending:
            deliver(pending.decode(errors="replace"))
        deliver(None)

    threading.Thread(target=read, name="echo-client-stdin", daemon=True).start()


async def follow_commands(controls: Controls, *, terminal: bool) -> None:
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    read_stdin_lines(asyncio.get_running_loop(), lines)
    while (line := await lines.get()) is not None:
        controls.apply(line)
    # Ctrl-D at a terminal quits; a pipe or /dev/null at its end just has no more commands.
    if terminal:
        controls.quit.set()


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


async def connect(http: aiohttp.ClientSession, options: Options) -> aiohttp.ClientWebSocketResponse:
    headers = {"X-API-Key": options.api_key} if options.api_key else {}
    try:
        return await http.ws_connect(options.url, headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        raise ClientError(
            f"{options.url} refused the WebSocket upgrade: HTTP {exc.status} {exc.message}"
        ) from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ClientError(f"cannot connect to {options.url}: {str(exc) or type(exc).__name__}") from exc


async def read_config(ws: aiohttp.ClientWebSocketResponse) -> StreamConfig:
    try:
        message = await ws.receive(timeout=CONFIG_TIMEOUT_S)
    except TimeoutError as exc:
        raise ClientError(f"the server sent no config message within {CONFIG_TIMEOUT_S:.0f} s") from exc
    if message.type == aiohttp.WSMsgType.TEXT:
        return StreamConfig.from_wire(message.data)
    if message.type == aiohttp.WSMsgType.CLOSE and message.data == INVALID_API_KEY:
        reason = message.extra or "Invalid API key"
        raise ClientError(
            f"the server refused the API key (close {INVALID_API_KEY} {reason!r}); pass it with --api-key"
        )
    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
        raise ClientError(
            f"the server closed the connection before its config: {ws.close_code} {message.extra or ''}"
        )
    raise ClientError(f"expected a config message first, got a {message.type.name} message")


async def receive(ws: aiohttp.ClientWebSocketResponse, tally: Tally, output: WavOutput | None) -> str:
    """Every message until the server closes the connection: its close code and reason."""
    while True:
        message = await ws.receive()
        if message.type == aiohttp.WSMsgType.BINARY:
            tally.received(len(message.data), time.monotonic())
            if output is not None:
                output.write(message.data)
        elif message.type == aiohttp.WSMsgType.TEXT:
            on_text(message.data, tally)
        elif message.type == aiohttp.WSMsgType.ERROR:
            raise ClientError(f"the connection failed: {ws.exception()}")
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return f"{ws.close_code} {message.extra or ''}".strip()


def on_text(text: str, tally: Tally) -> None:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        log.warning("server sent text that is not JSON: %.200s", text)
        return
    if isinstance(message, dict) and message.get("type") == "pong":
        tally.pong(time.monotonic())
    else:
        log.warning("server: %.200s", text)


async def send_then_wait_for_echoes(source: Source, send: Send, controls: Controls, tally: Tally) -> None:
    await source.run(send, controls)
    log.info("all audio sent; waiting for the echoes")
    while not tally.all_back():
        remaining = tally.last_echo_due() + LATE_ECHO_GRACE_S - time.monotonic()
        if remaining <= 0:
            log.warning("%d bytes did not come back", tally.sent_bytes - tally.received_bytes)
            return
        tally.changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.changed.wait(), remaining)


async def converse(
    ws: aiohttp.ClientWebSocketResponse,
    source: Source,
    controls: Controls,
    tally: Tally,
    output: WavOutput | None,
) -> None:
    """Send, receive and obey commands until quit, the end of the echoes, or the server's close."""

    async def send(chunk: bytes) -> None:
        tally.sent(len(chunk), time.monotonic())
        await send_message(ws, chunk)

    tally.ping_sent(time.monotonic())
    await send_message(ws, PING)
    receiving = asyncio.create_task(receive(ws, tally, output), name="echo-client-receive")
    sending = asyncio.create_task(
        send_then_wait_for_echoes(source, send, controls, tally), name="echo-client-send"
    )
    quitting = asyncio.create_task(controls.quit.wait(), name="echo-client-quit")
    commands = asyncio.create_task(
        follow_commands(controls, terminal=sys.stdin.isatty()), name="echo-client-stdin"
    )
    try:
        done, _ = await asyncio.wait({receiving, sending, quitting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await stop_tasks(receiving, sending, quitting, commands)
    finished = sending in done and sending.exception() is None
    if receiving in done and not finished and not controls.quit.is_set():
        # checked first: a send that failed because of this close would report less
        raise ClientError(f"the server closed the connection ({receiving.result()}) before the stream ended")
    for task in done:
        task.result()  # a ClientError from a task is the client's error


async def send_message(ws: aiohttp.ClientWebSocketResponse, data: bytes | str) -> None:
    try:
        await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise ClientError(f"the connection was lost: {exc}") from exc


async def stop_tasks(*tasks: "asyncio.Task[Any]") -> None:
    for task in tasks:
        task.cancel()
    _, pending = await asyncio.wait(tasks, timeout=TASK_STOP_TIMEOUT_S)
    for task in pending:
        log.warning("task %s did not stop within %.0f s", task.get_name(), TASK_STOP_TIMEOUT_S)


@contextlib.contextmanager
def quit_on_signals(controls: Controls) -> Iterator[None]:
    """Ctrl-C and SIGTERM act as `quit`: the socket is closed cleanly and the summary printed."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, controls.quit.set)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def choose_source(options: Options, wav: WavInput | None, config: StreamConfig) -> Source:
    chunk_samples = options.chunk_samples or config.chunk_size
    if wav is not None:
        wav.check_rate(config.sample_rate)
        return FileSource(wav, chunk_samples=chunk_samples)
    return MicrophoneSource(import_sounddevice(), rate=config.sample_rate, chunk_samples=chunk_samples)


async def run(options: Options) -> None:
    # Everything that can be checked before connecting is: a bad file costs no connection.
    if urlsplit(options.url).scheme not in ("ws", "wss", "http", "https"):
        raise UsageError(f"not a WebSocket URL: {options.url} (expected ws://HOST:PORT/ws/echo)")
    wav = read_wav(options.file) if options.file is not None else None
    if wav is None:
        import_sounddevice()
    timeout = aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        ws = await connect(http, options)
        try:
            config = await read_config(ws)
            log.info("config: %s", config)
            source = choose_source(options, wav, config)
            output = WavOutput(options.output, config.sample_rate) if options.output is not None else None
            controls = Controls(sending=not options.wait_for_start)
            tally = Tally()
            try:
                with quit_on_signals(controls):
                    await converse(ws, source, controls, tally, output)
            finally:
                if output is not None:
                    output.close()
                sys.stdout.write(tally.summary())
        finally:
            await ws.close()


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number: {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Stream a WAV file or the microphone to a delayed-echo endpoint and save what comes back. "
        "Commands on stdin, one per line: start, stop, resume, quit."
    )
    parser.add_argument("url", metavar="URL", help="the endpoint, e.g. ws://127.0.0.1:8000/ws/echo")
    parser.add_argument(
        "--file", type=Path, metavar="WAV", help="mono 16-bit WAV to send (default: microphone)"
    )
    parser.add_argument("--output", type=Path, metavar="WAV", help="write the echoed audio to this WAV file")
    parser.add_argument("--api-key", metavar="KEY", help="sent as the X-API-Key header")
    parser.add_argument(
        "--chunk-samples", type=positive_int, metavar="N", help="samples per chunk (default: the server's)"
    )
    parser.add_argument(
        "--wait-for-start", action="store_true", help="send nothing until the `start` command"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="log progress to stderr")


def main(args: argparse.Namespace) -> int:
    """Run the client for parsed arguments; the exit status."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="voxbus echo-client: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    options = Options(
        url=args.url,
        file=args.file,
        output=args.output,
        api_key=args.api_key,
        chunk_samples=args.chunk_samples,
        wait_for_start=args.wait_for_start,
    )
    try:
        asyncio.run(run(options))
    except ClientError as exc:
        sys.stderr.write(f"voxbus echo-client: {exc}\n")
        return exc.status
    except KeyboardInterrupt:  # Ctrl-C before the stream began (after, it is `quit`)
        return 130
    return 0
