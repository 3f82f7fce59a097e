"""Memory benchmark: server RSS per idle WebSocket connection and per active echo stream, next to a
bare aiohttp WebSocket server.

Servers, in the same invocation: a bare aiohttp echo server (bench/bare_echo.py, the baseline),
voxbus embedded (`voxbus up`: every service in one process, in-process bus and store) and voxbus
ingest over Kafka and Redis (`voxbus serve ingest` + `voxbus serve echo`: local processes from
voxbus.devinfra, or KAFKA_BOOTSTRAP_SERVERS / REDIS_URL; only ingest, where the connections
live, is measured).

Each measurement runs on a fresh server process (Python's allocator keeps what a measurement
freed and the next one would reuse it unseen), warmed up first by one short echo stream (and,
for voxbus, one session on /api/ws/audio) so lazy imports and first allocations are paid. Then:

  idle connection  `--connections` WebSockets on /ws/audio?delay_ms=0&sample_rate=16000 that send
                   nothing (for voxbus, each an echo session); once the server is idle, its RSS
                   over the RSS before, per connection
  idle session     the same on /api/ws/audio?sample_rate=16000&format=pcm (voxbus only: a new
                   recording session each, counted once its "Audio session created" greeting came);
                   compared with the bare server's idle connection, the same WebSocket minus voxbus
  active stream    `--streams` streams of 20 ms frames (640 bytes, 16 kHz s16le) at real time for
                   `--seconds` on /ws/audio?delay_ms=0, the echoes read; peak RSS (polled every
                   100 ms) over the RSS before, per stream

RSS is Rss of /proc/PID/smaps_rollup, the median of a few samples. The table gives each figure
over the baseline's (the bare server's idle connection for idle sessions too). Target: an idle
voxbus connection ≤ 1.5x the bare aiohttp connection's memory.

Usage: uv run python bench/memory.py [--connections 200] [--streams 50] [--seconds 10]
       [--smoke] [--json PATH]
"""

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    bare_server,
    serve,
    stop_processes,
    voxbus_env,
    voxbus_up,
    wait_idle,
    wait_ready,
    write_json,
)
from voxbus.devinfra.ports import free_port

BARE, EMBEDDED, KAFKA = "bare aiohttp", "voxbus embedded", "voxbus ingest over Kafka"
ECHO_PATH = "/ws/audio?delay_ms=0&sample_rate=16000"
SESSION_PATH = "/api/ws/audio?sample_rate=16000&format=pcm"
FRAME = bytes(i & 0xFF for i in range(640))  # 20 ms of 16 kHz mono s16le
KIB = 1024


def rss_bytes(pid: int) -> int:
    """The process's resident set (smaps_rollup's Rss; VmRSS where there is no smaps_rollup)."""
    for name, label in (("smaps_rollup", "Rss:"), ("status", "VmRSS:")):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(label):
                    return int(line.split()[1]) * KIB
    raise RuntimeError(f"no RSS for process {pid}")


def steady_rss(pid: int, samples: int = 5, gap: float = 0.2) -> float:
    """The median of a few RSS samples `gap` seconds apart."""
    values = []
    for i in range(samples):
        if i:
            time.sleep(gap)
        values.append(rss_bytes(pid))
    return statistics.median(values)


@dataclass(frozen=True, slots=True)
class Running:
    base: str  # ws://host:port
    pid: int  # the process measured: where the connections live
    pids: tuple[int, ...]  # every process of the server, which must be idle before a sample


Starter = Callable[[], contextlib.AbstractContextManager[Running]]


@contextlib.contextmanager
def bare_echo_server() -> Iterator[Running]:
    with bare_server("bare_echo.py") as (base, pid):
        yield Running(base.replace("http://", "ws://"), pid, (pid,))


@contextlib.contextmanager
def embedded_server(streams: int) -> Iterator[Running]:
    with voxbus_up(streams) as (base, pid):
        yield Running(base.replace("http://", "ws://"), pid, (pid,))


@contextlib.contextmanager
def ingest_server(env: dict[str, str], echo_pid: int) -> Iterator[Running]:
    """A fresh `voxbus serve ingest`; the echo service (`echo_pid`) runs for the whole benchmark."""
    port = free_port()
    process = serve("ingest", port, env)
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{port}/ready"))
        yield Running(f"ws://127.0.0.1:{port}", process.pid, (process.pid, echo_pid))
    finally:
        stop_processes(process)


def connector() -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=0)  # a socket holds its connection: no pool limit


async def open_idle(
    http: aiohttp.ClientSession, url: str, *, greeted: bool
) -> aiohttp.ClientWebSocketResponse:
    """A WebSocket that sends nothing; with `greeted`, once the server's first message (a
    session protocol's "Audio session created") came."""
    ws = await http.ws_connect(url)
    if greeted:
        async with asyncio.timeout(30):
            first = await ws.receive()
        if (
            first.type != aiohttp.WSMsgType.TEXT
            or json.loads(first.data).get("message") != "Audio session created"
        ):
            await ws.close()
            raise RuntimeError(f"{url}: not a new session: {first.type.name} {first.data!r:.200}")
    return ws


async def session_warmup(http: aiohttp.ClientSession, base: str, chunks: int = 10) -> None:
    """One recording session on /api/ws/audio: greeted, `chunks` chunks acknowledged, then left."""
    ws = await open_idle(http, base + SESSION_PATH, greeted=True)
    try:
        for _ in range(chunks):
            await ws.send_bytes(FRAME)
        async with asyncio.timeout(30):
            for _ in range(chunks):
                await ws.receive()
    finally:
        await ws.close()


@dataclass(slots=True)
class Echoes:
    sent: int = 0
    received: int = 0
    failed: list[str] = field(default_factory=list)


async def stream(
    http: aiohttp.ClientSession, url: str, seconds: float, start_delay: float, echoes: Echoes
) -> None:
    """20 ms frames at real time for `seconds`, the echoes read (and counted) as they come."""
    await asyncio.sleep(start_delay)
    sent = received = 0
    finished, all_back = False, asyncio.Event()  # every frame sent came back, or the socket closed
    try:
        async with http.ws_connect(url) as ws:

            async def read() -> None:
                nonlocal received
                async for message in ws:
                    received += message.type == aiohttp.WSMsgType.BINARY
                    if finished and received >= sent:
                        all_back.set()
                all_back.set()

            reader = asyncio.create_task(read())
            begin = time.perf_counter()
            while time.perf_counter() - begin < seconds and not ws.closed:
                await ws.send_bytes(FRAME)
                sent += 1
                await asyncio.sleep(max(0.0, begin + sent * 0.02 - time.perf_counter()))
            finished = True
            if received < sent:
                with contextlib.suppress(TimeoutError):  # the last echoes
                    async with asyncio.timeout(3.0):
                        await all_back.wait()
            await ws.close()
            await reader
    except (aiohttp.ClientError, ConnectionError) as exc:
        echoes.failed.append(f"{type(exc).__name__}: {exc}")
    finally:
        echoes.sent += sent
        echoes.received += received


async def streams_with_peak(run: Running, streams: int, seconds: float) -> tuple[int, Echoes]:
    """`streams` echo streams at once; the measured process's peak RSS meanwhile (every 100 ms)."""
    echoes, done = Echoes(), asyncio.Event()
    peak = rss_bytes(run.pid)

    async def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_bytes(run.pid))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.1):
                    await done.wait()

    poller = asyncio.create_task(poll())
    try:
        async with aiohttp.ClientSession(connector=connector()) as http:
            url = run.base + ECHO_PATH
            await asyncio.gather(
                *(stream(http, url, seconds, 0.02 * i / streams, echoes) for i in range(streams))
            )
    finally:
        done.set()
        await poller
    return peak, echoes


def warm_up(run: Running, *, sessions: bool) -> None:
    """Lazy imports and first allocations paid: one short echo stream (and one recording session)."""

    async def go() -> None:
        await streams_with_peak(run, 1, 1.0)
        if sessions:
            async with aiohttp.ClientSession() as http:
                await session_warmup(http, run.base)

    asyncio.run(go())


def settled(run: Running, notes: list[str], what: str) -> float:
    """The measured process's RSS once every process of the server is idle."""
    if not wait_idle(run.pids):
        notes.append(f"{what}: the server was still busy after 30 s; sampled anyway")
    return steady_rss(run.pid)


def measure_idle(start: Starter, path: str, count: int, *, voxbus: bool, notes: list[str]) -> float:
    """Bytes of RSS per idle connection on `path`, on a fresh server."""
    with start() as run:
        warm_up(run, sessions=voxbus)
        before = settled(run, notes, f"{path} before")

        async def hold() -> float:
            async with aiohttp.ClientSession(connector=connector()) as http:
                gate = asyncio.Semaphore(20)  # connects at a pace the server takes without backlog

                async def one() -> aiohttp.ClientWebSocketResponse:
                    async with gate:
                        return await open_idle(http, run.base + path, greeted=path == SESSION_PATH)

                opened = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
                sockets = [ws for ws in opened if isinstance(ws, aiohttp.ClientWebSocketResponse)]
                if len(sockets) < count:
                    first = next(e for e in opened if isinstance(e, BaseException))
                    notes.append(f"{path}: {count - len(sockets)} of {count} did not open ({first!r})")
                after = await asyncio.to_thread(settled, run, notes, f"{path} after")
                await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            return (after - before) / max(len(sockets), 1)

        return asyncio.run(hold())


def measure_active(start: Starter, streams: int, seconds: float, *, voxbus: bool, notes: list[str]) -> float:
    """Bytes of peak RSS per active echo stream, on a fresh server."""
    with start() as run:
        warm_up(run, sessions=voxbus)
        before = settled(run, notes, "streams before")
        peak, echoes = asyncio.run(streams_with_peak(run, streams, seconds))
        if echoes.failed or echoes.received < echoes.sent:
            notes.append(
                f"active streams: {echoes.received} of {echoes.sent} frames echoed,"
                f" {len(echoes.failed)} streams failed{': ' + echoes.failed[0] if echoes.failed else ''}"
            )
        return (peak - before) / streams


@dataclass(slots=True)
class Figures:
    idle_connection: float
    active_stream: float
    idle_session: float | None = None  # voxbus only
    notes: list[str] = field(default_factory=list)


def measure_server(start: Starter, args: argparse.Namespace, *, voxbus: bool) -> Figures:
    notes: list[str] = []
    idle = measure_idle(start, ECHO_PATH, args.connections, voxbus=voxbus, notes=notes)
    session = (
        measure_idle(start, SESSION_PATH, args.connections, voxbus=voxbus, notes=notes) if voxbus else None
    )
    active = measure_active(start, args.streams, args.seconds, voxbus=voxbus, notes=notes)
    return Figures(idle_connection=idle, active_stream=active, idle_session=session, notes=notes)


def report(results: dict[str, Figures], args: argparse.Namespace) -> None:
    base = results[BARE]
    print(
        f"server RSS growth: {args.connections} idle connections; {args.streams} echo streams"
        f" (20 ms frames, real time) for {args.seconds:g} s, peak"
    )
    print("KiB each (x the bare aiohttp server's; idle sessions over its idle connection)")
    print(f"{'server':26} {'idle connection':>20} {'idle session':>20} {'active stream':>20}")

    def cell(value: float | None, baseline: float) -> str:
        if value is None:
            return f"{'-':>20}"
        ratio = f"{value / baseline:.2f}x" if baseline > 0 else "n/a"
        return f"{value / KIB:11.1f} ({ratio:>6})"

    for name, figures in results.items():
        print(
            f"{name:26} {cell(figures.idle_connection, base.idle_connection)}"
            f" {cell(figures.idle_session, base.idle_connection)}"
            f" {cell(figures.active_stream, base.active_stream)}"
        )
    for name, figures in results.items():
        for note in figures.notes:
            print(f"{name}: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, help="idle connections (default 200; 20 with --smoke)")
    parser.add_argument("--streams", type=int, help="active streams (default 50; 5 with --smoke)")
    parser.add_argument("--seconds", type=float, help="seconds of each stream (default 10; 2 with --smoke)")
    parser.add_argument("--smoke", action="store_true", help="a quick check: small defaults")
    parser.add_argument("--json", type=Path, help="write the figures (bytes) here")
    args = parser.parse_args()
    for name, full, smoke in (("connections", 200, 20), ("streams", 50, 5), ("seconds", 10.0, 2.0)):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else full)
    streams = max(args.connections, args.streams)
    results = {
        BARE: measure_server(bare_echo_server, args, voxbus=False),
        EMBEDDED: measure_server(lambda: embedded_server(streams), args, voxbus=True),
    }
    port = free_port()
    with voxbus_env(f"benchmem{port}.", streams) as env:
        echo = serve("echo", port, env)
        try:
            asyncio.run(wait_ready(f"http://127.0.0.1:{port}/ready"))
            results[KAFKA] = measure_server(lambda: ingest_server(env, echo.pid), args, voxbus=True)
        finally:
            stop_processes(echo)
    report(results, args)
    write_json(
        args.json,
        {
            "idle_connection_bytes": {name: f.idle_connection for name, f in results.items()},
            "idle_session_bytes": {
                name: f.idle_session for name, f in results.items() if f.idle_session is not None
            },
            "active_stream_bytes": {name: f.active_stream for name, f in results.items()},
            "connections": args.connections,
            "streams": args.streams,
        },
    )


if __name__ == "__main__":
    main()
