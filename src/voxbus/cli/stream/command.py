"""`voxbus stream FILE`: stream an audio file to a recording session, show progress (seconds
sent, chunks acknowledged, ack latency), close the session and print the result.

    voxbus stream speech.mp3                      a new session, at real time
    voxbus stream speech.flac --fast              as fast as the acks come back
    voxbus stream speech.wav --resume SESSION_ID  the chunks the session does not have yet

The progress bar goes to stderr (only when it is a terminal); the result goes to stdout as
`key: value` lines. Every error prints one line and exits 1 (2 for a bad command line or file).
"""

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path
from typing import Final

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from voxbus.cli.echo_client.errors import ClientError
from voxbus.cli.stream.audio import AudioFile, open_audio
from voxbus.cli.stream.session import Counts, StreamSession, Target
from voxbus.common.client_messages import SessionClosed, SessionFailed
from voxbus.common.runtime import stop_tasks

DEFAULT_URL: Final = "ws://127.0.0.1:8000/api/ws/audio"
_REFRESH_SECONDS: Final = 0.25


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="an audio file: WAV, FLAC, MP3, Opus/Vorbis in Ogg, …")
    parser.add_argument(
        "--url",
        default=os.environ.get("VOXBUS_STREAM_URL", DEFAULT_URL),
        help=f"the session endpoint (default {DEFAULT_URL}, or VOXBUS_STREAM_URL)",
    )
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime", dest="realtime", action="store_true", default=True, help="at real time (default)"
    )
    pace.add_argument(
        "--fast", dest="realtime", action="store_false", help="as fast as the server acknowledges"
    )
    parser.add_argument("--resume", metavar="SESSION_ID", help="continue this session where it stands")
    parser.add_argument("--user-id", help="the session's user_id")
    parser.add_argument(
        "--api-key", default=os.environ.get("VOXBUS_API_KEY"), help="the API key, if the server has one"
    )


def main(args: argparse.Namespace) -> int:
    counts = Counts(total_seconds=None)
    try:
        audio = open_audio(args.file)
        counts.total_seconds = audio.seconds
        target = Target(url=args.url, api_key=args.api_key, user_id=args.user_id, realtime=args.realtime)
        result = asyncio.run(_stream(target, audio, counts, args.resume))
    except ClientError as exc:
        sys.stderr.write(f"voxbus: {exc}\n")
        return exc.status
    except KeyboardInterrupt:
        left = f"; resume it with --resume {counts.session_id}" if counts.session_id else ""
        sys.stderr.write(f"voxbus: interrupted after {counts.acked} chunks{left}\n")
        return 130
    latencies = sorted(counts.latencies)
    lines = {
        "session_id": result.session_id,
        "status": result.status,
        "chunks": result.chunk_count,
        "duration_seconds": result.duration_seconds,
        "file_path": result.file_path,
        "sent": f"{audio.rate} Hz, {audio.channels} channel(s), 16-bit PCM"
        + ("" if audio.rate == audio.source_rate else f" (resampled from {audio.source_rate} Hz)"),
        "ack_latency_ms": _latency(latencies),
        "resumed": counts.resumes,
    }
    if result.status != "completed":
        lines["error"] = getattr(result, "error", None)
    sys.stdout.write("".join(f"{key}: {value}\n" for key, value in lines.items()))
    return 0 if result.status == "completed" else 1


async def _stream(
    target: Target, audio: AudioFile, counts: Counts, resume: str | None
) -> SessionClosed | SessionFailed:
    console = Console(stderr=True)
    try:
        async with aiohttp.ClientSession() as http:
            session = StreamSession(http, target, audio, counts)
            if not console.is_terminal:
                return await session.run(resume)
            columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[detail]}"))
            with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
                shown = bar.add_task(audio.path.name, total=counts.total_seconds, detail="")
                work = asyncio.create_task(session.run(resume), name="stream")
                try:
                    while not work.done():
                        await asyncio.wait({work}, timeout=_REFRESH_SECONDS)
                        bar.update(shown, completed=counts.sent_seconds, detail=_detail(counts))
                finally:
                    await stop_tasks([work])
                return work.result()
    except aiohttp.ClientError as exc:  # a URL aiohttp cannot use, and the like
        raise ClientError(f"{target.url}: {exc or type(exc).__name__}") from None


def _detail(counts: Counts) -> str:
    total = "" if counts.total_seconds is None else f"/{counts.total_seconds:.1f}"
    latency = _latency(sorted(counts.latencies))
    return f"{counts.sent_seconds:.1f}{total} s  {counts.acked} acked  ack {latency} ms"


def _latency(latencies: list[float]) -> str:
    if not latencies:
        return "-"
    p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]
    return f"p50 {statistics.median(latencies) * 1000:.1f}, p95 {p95 * 1000:.1f}"
