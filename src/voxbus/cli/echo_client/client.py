"""One run of the client: check the input, connect, then send, receive and obey commands."""

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from voxbus.cli.echo_client.commands import Controls, follow_commands, quit_on_signals
from voxbus.cli.echo_client.errors import ClientError, UsageError
from voxbus.cli.echo_client.sources import FileSource, MicrophoneSource, Send, Source, import_sounddevice
from voxbus.cli.echo_client.tally import Tally
from voxbus.cli.echo_client.wav import WavInput, WavOutput, read_wav
from voxbus.cli.echo_client.wire import PING, connect, read_config, receive, send_message
from voxbus.common.client_messages import EchoStreamFormat
from voxbus.common.runtime import stop_tasks

log = logging.getLogger("voxbus.echo_client")

CONNECT_TIMEOUT_S: Final = 10.0
LATE_ECHO_GRACE_S: Final = 5.0  # after the file: how long past the last expected echo to wait
TASK_STOP_TIMEOUT_S: Final = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    url: str
    file: Path | None
    output: Path | None
    api_key: str | None
    chunk_samples: int | None
    wait_for_start: bool


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
            async with asyncio.timeout(remaining):
                await tally.changed.wait()


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
        await stop_tasks([receiving, sending, quitting, commands], timeout=TASK_STOP_TIMEOUT_S)
    finished = sending in done and sending.exception() is None
    if receiving in done and not finished and not controls.quit.is_set():
        # checked first: a send that failed because of this close would report less
        raise ClientError(f"the server closed the connection ({receiving.result()}) before the stream ended")
    for task in done:
        task.result()  # a ClientError from a task is the client's error


def choose_source(options: Options, wav: WavInput | None, config: EchoStreamFormat) -> Source:
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
        ws = await connect(http, options.url, options.api_key)
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
