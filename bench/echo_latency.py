"""Echo benchmark: concurrent 16 kHz streams of 20 ms frames at real time into /ws/audio?delay_ms=D.

Every frame is unique (stream index, frame number, a byte pattern), so the client matches each one
it gets back to the one it sent: error = received - sent - D (for D = 0, the latency the echo path
adds), and frames lost (not back D + 5 s after the stream's end), reordered, duplicated, or bad (not
a byte-exact copy of a sent frame, or any text message).

Runs, in the same invocation and for each delay: a bare aiohttp echo server (bench/bare_echo.py,
the baseline) and voxbus (`voxbus serve ingest` + `voxbus serve echo` over real Kafka and Redis:
local processes from voxbus.devinfra, or KAFKA_BOOTSTRAP_SERVERS / REDIS_URL; with `--embedded`,
one `voxbus up` process with the in-process bus and store). `--pin N` runs both servers on core N
only and the load generator on the others: one core's worth of server, measured. Prints, for each,
p50 / p99 / max |error|, the frame counts and server CPU per echoed frame (from /proc: ingest + echo
for voxbus, around the streaming phase only), then voxbus's CPU per frame over the baseline's.
First it measures one produce -> consume hop through Kafka with nothing else running: the floor
under the echo path, which crosses the bus twice. Each server gets `--warmup` seconds of the same
load, not measured, before its runs; after the table, where the machine's CPU went in each run
(servers, local Kafka broker, load generator), since all of them share its cores.
Each run begins once every server is idle, so that it does not pay for the backlog of the one before.

The targets are bench/suite.py's (docs/benchmarks.md), which runs this script at several loads.

Usage: npm ci --prefix bench/loadgen   (once: the Node.js load generator, so the client's CPU
       stays out of the measurement; without it a Python client is used)
       uv run python bench/echo_latency.py [--streams 20] [--seconds 15] [--delays 0,1000]
           [--embedded] [--pin 1] [--json results.json]
"""

import argparse
import asyncio
import contextlib
import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    LOADGEN,
    CpuShare,
    CpuWatch,
    add_load_arguments,
    bare_server,
    free_port,
    kafka_hop_ms,
    on_cores,
    other_cores,
    percentile,
    redis_commands,
    serve,
    stop_processes,
    voxbus_env,
    voxbus_up,
    wait_idle,
    wait_ready,
    write_json,
)

FRAME_BYTES = 640  # 20 ms of 16 kHz mono s16le
GRACE = 5.0  # seconds after a stream's last frame (on top of the delay) before the rest count as lost
BODIES = [bytes((k + j) & 0xFF for j in range(8, FRAME_BYTES)) for k in range(256)]


def echo_frame(index: int, n: int) -> bytes:
    """The frame loadgen.mjs sends too: u32 LE stream index, u32 LE frame number, a pattern."""
    return struct.pack("<II", index, n) + BODIES[n & 0xFF]


def frame_number(index: int, message: aiohttp.WSMessage) -> int | None:
    """The number of the frame `message` is an exact copy of, if it is one of stream `index`'s."""
    data = message.data if message.type == aiohttp.WSMsgType.BINARY else b""
    if len(data) != FRAME_BYTES:
        return None
    stream_index, n = struct.unpack_from("<II", data)
    return n if stream_index == index and data == echo_frame(index, n) else None


@dataclass(slots=True)
class Tally:
    """What the clients of one run saw; the same fields as loadgen.mjs's echo-mode JSON."""

    errors_ms: list[float] = field(default_factory=list)
    sent: int = 0
    received: int = 0
    lost: int = 0
    reordered: int = 0
    duplicated: int = 0
    bad: int = 0
    failed: int = 0
    first_error: str = ""

    def fail(self, error: str) -> None:
        self.failed += 1
        self.first_error = self.first_error or error


async def send_frames(
    ws: aiohttp.ClientWebSocketResponse, index: int, seconds: float, sent_at: list[float]
) -> None:
    """20 ms frames at real time for `seconds`, paced against the clock; each send time kept."""
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds and not ws.closed:
        sent_at.append(time.perf_counter())
        await ws.send_bytes(echo_frame(index, len(sent_at) - 1))
        await asyncio.sleep(max(0.0, begin + len(sent_at) * 0.02 - time.perf_counter()))


async def stream(
    url: str, index: int, *, seconds: float, delay_ms: int, start_delay: float, tally: Tally
) -> None:
    """One stream from the Python client (the fallback for loadgen.mjs)."""
    await asyncio.sleep(start_delay)
    sent_at: list[float] = []
    seen: set[int] = set()
    settled = asyncio.Event()  # every frame is back, or the server closed the socket
    finished = False

    async def read_echoes(ws: aiohttp.ClientWebSocketResponse) -> None:
        highest = -1
        async for message in ws:
            now = time.perf_counter()
            n = frame_number(index, message)
            if n is None or n >= len(sent_at):
                tally.bad += 1
            elif n in seen:
                tally.duplicated += 1
            else:
                seen.add(n)
                if n < highest:
                    tally.reordered += 1
                highest = max(highest, n)
                tally.errors_ms.append(1000 * (now - sent_at[n]) - delay_ms)
                if finished and len(seen) == len(sent_at):
                    settled.set()
        settled.set()

    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
            reader = asyncio.create_task(read_echoes(ws), name=f"echo-reader-{index}")
            try:
                await send_frames(ws, index, seconds, sent_at)
                finished = True
                if len(seen) < len(sent_at):
                    with contextlib.suppress(TimeoutError):  # what is still out by then is lost
                        async with asyncio.timeout(delay_ms / 1000 + GRACE):
                            await settled.wait()
                closed_early = ws.closed
            finally:
                await ws.close()  # ends read_echoes's loop
                await reader
            if closed_early:
                tally.fail(f"stream {index}: closed early ({ws.close_code})")
    except (aiohttp.ClientError, ConnectionResetError) as exc:
        tally.fail(f"stream {index}: {type(exc).__name__}: {exc}")
    finally:
        tally.sent += len(sent_at)
        tally.received += len(seen)
        tally.lost += len(sent_at) - len(seen)


def node_streams(url: str, args: argparse.Namespace, seconds: float, delay_ms: int) -> Tally:
    """The Node.js load generator (bench/loadgen) in echo mode: its client CPU stays out of the way
    (on the cores the servers are not pinned to, if they are)."""
    command = [
        *("node", str(LOADGEN / "loadgen.mjs"), url),
        *(str(args.streams), str(seconds), "--echo", str(delay_ms)),
    ]
    output = subprocess.run(
        on_cores(other_cores(args.pin), command), capture_output=True, text=True, check=True
    ).stdout
    return Tally(**json.loads(output.splitlines()[-1]))


async def python_streams(url: str, streams: int, seconds: float, delay_ms: int) -> Tally:
    tally = Tally()
    await asyncio.gather(
        *(
            stream(url, i, seconds=seconds, delay_ms=delay_ms, start_delay=i / streams, tally=tally)
            for i in range(streams)
        ),
    )
    return tally


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    base: str  # ws://host:port
    pids: dict[str, int]  # by process name
    redis_url: str | None = None  # the store it uses, if Redis: its commands per frame are counted
    kafka: bool = False  # uses the local Kafka broker (whose CPU then counts as its own)


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    tally: Tally
    cpu_seconds: float
    share: CpuShare
    cpu_seconds_per_process: dict[str, float]
    redis_commands: int | None

    def row(self, server: str, delay_ms: int) -> str:
        t = self.tally
        if errors := self.abs_errors:
            p50, p99, worst = (percentile(errors, q) for q in (0.5, 0.99, 1.0))
            timing = f"{p50:7.1f} {p99:7.1f} {worst:7.1f}"
        else:
            timing = f"{'-':>7} {'-':>7} {'-':>7}"
        counts = f"{t.sent:7d} {t.received:7d} {t.lost:6d} {t.reordered:6d} {t.duplicated:5d} {t.bad:5d}"
        cpu = f"{self.cpu_us_per_frame:12.0f}" if t.received else f"{'-':>12}"
        return f"{server:30} {delay_ms:6d} {timing} {counts} {cpu}"

    @property
    def abs_errors(self) -> list[float]:
        return sorted(abs(e) for e in self.tally.errors_ms)

    @property
    def cpu_us_per_frame(self) -> float:
        return 1e6 * self.cpu_seconds / max(self.tally.received, 1)

    def as_dict(self, server: str, delay_ms: int) -> dict[str, Any]:
        t, errors, frames = self.tally, self.abs_errors, max(self.tally.received, 1)
        return {
            "server": server,
            "delay_ms": delay_ms,
            **{
                name: percentile(errors, q)
                for name, q in (("p50_ms", 0.5), ("p99_ms", 0.99), ("max_ms", 1.0))
            },
            **{name: getattr(t, name) for name in ("sent", "received", "lost", "reordered", "duplicated")},
            "bad": t.bad,
            "failed": t.failed,
            "first_error": t.first_error,
            "cpu_us_per_frame": self.cpu_us_per_frame,
            "cpu_us_per_frame_by_process": {
                name: 1e6 * seconds / frames for name, seconds in self.cpu_seconds_per_process.items()
            },
            "redis_commands_per_frame": None if self.redis_commands is None else self.redis_commands / frames,
            "share": self.share.as_dict(),
        }


HEADER = (
    f"{'server':30} {'delay':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'sent':>7} {'recv':>7}"
    f" {'lost':>6} {'reord':>6} {'dup':>5} {'bad':>5} {'CPU us/frame':>12}"
)


async def streams_of(url: str, args: argparse.Namespace, seconds: float, delay_ms: int) -> Tally:
    if args.client == "node":
        return await asyncio.to_thread(node_streams, url, args, seconds, delay_ms)
    return await python_streams(url, args.streams, seconds, delay_ms)


async def measure(server: Server, args: argparse.Namespace, delay_ms: int) -> Result:
    url = f"{server.base}/ws/audio?delay_ms={delay_ms}&sample_rate=16000"
    redis_before = redis_commands(server.redis_url) if server.redis_url else None
    with contextlib.ExitStack() as stack:
        watch = stack.enter_context(CpuWatch(list(server.pids.values()), brokers=server.kafka))
        each = {
            name: stack.enter_context(CpuWatch([pid], brokers=False)) for name, pid in server.pids.items()
        }
        tally = await streams_of(url, args, args.seconds, delay_ms)
        # the work the load left behind (a recording that fell behind, say) is the load's too
        await asyncio.to_thread(wait_idle, list(server.pids.values()))
    assert watch.share is not None
    return Result(
        tally=tally,
        cpu_seconds=watch.server_seconds,
        share=watch.share,
        cpu_seconds_per_process={name: one.server_seconds for name, one in each.items()},
        redis_commands=(
            redis_commands(server.redis_url) - redis_before
            if server.redis_url and redis_before is not None
            else None
        ),
    )


BASELINE = "bare aiohttp echo (baseline)"


def measure_all(
    servers: list[Server], args: argparse.Namespace
) -> tuple[dict[tuple[int, str], Result], list[str]]:
    """Each server at each delay; and the runs that began with a server busy."""
    for server in servers:  # connections, Kafka metadata, the consumer's fetch, the broker's JIT
        asyncio.run(streams_of(f"{server.base}/ws/audio?sample_rate=16000", args, max(args.warmup, 1.0), 0))
    everyone = [pid for server in servers for pid in server.pids.values()]
    results: dict[tuple[int, str], Result] = {}
    busy: list[str] = []
    for delay in args.delays:
        for server in servers:
            if not wait_idle(everyone):
                busy.append(f"{server.name}, delay {delay}")
            results[delay, server.name] = asyncio.run(measure(server, args, delay))
    return results, busy


def report(
    results: dict[tuple[int, str], Result], busy: list[str], hop: list[float], args: argparse.Namespace
) -> None:
    pinned = f", servers pinned to core {args.pin}" if args.pin is not None else ""
    print(
        f"{args.streams} streams x 20 ms frames for {args.seconds:g} s ({args.client} load generator{pinned})"
    )
    if hop:
        print(
            f"Kafka produce -> consume, one hop, nothing else running: p50 {percentile(hop, 0.5):.1f}"
            f" / p99 {percentile(hop, 0.99):.1f} ms"
        )
        print("(an echo crosses the bus twice: raw audio to the echo service, the echo back to ingest)")
    print("|error| = |received - sent - delay|; lost = not back delay + 5 s after the stream's end")
    print(HEADER)
    for (delay, name), result in results.items():
        print(result.row(name, delay))
    for (delay, name), result in results.items():
        if (t := result.tally).failed:
            print(f"{name}, delay {delay}: {t.failed} streams failed, the first: {t.first_error}")
    for run in busy:
        print(f"{run}: began with the servers still busy after a 30 s wait (the run before's backlog)")
    for (delay, name), result in results.items():
        if name == BASELINE:
            continue
        bare_result = results[delay, BASELINE]
        if bare_result.tally.received and result.tally.received and bare_result.cpu_us_per_frame > 0:
            ratio = f"{result.cpu_us_per_frame / bare_result.cpu_us_per_frame:.2f}x the baseline's"
        else:
            ratio = "n/a (no frames echoed, or no measurable baseline CPU)"
        print(f"delay {delay} ms: {name} CPU per echoed frame {ratio}")
        frames = max(result.tally.received, 1)
        processes = ", ".join(
            f"{process} {1e6 * seconds / frames:.0f} us"
            for process, seconds in result.cpu_seconds_per_process.items()
        )
        print(f"delay {delay} ms: CPU per echoed frame by process: {processes}")
        if result.redis_commands is not None:
            print(f"delay {delay} ms: Redis commands per echoed frame {result.redis_commands / frames:.3f}")
    for (delay, name), result in results.items():
        print(f"CPU during {name}, delay {delay}: {result.share.line()}")


@contextlib.contextmanager
def bare_echo(cores: set[int] | None) -> Iterator[Server]:
    with bare_server("bare_echo.py", cores=cores) as (base, pid):
        yield Server(BASELINE, base.replace("http://", "ws://"), {"bare echo": pid})


@contextlib.contextmanager
def distributed(args: argparse.Namespace, cores: set[int] | None) -> Iterator[tuple[Server, list[float]]]:
    """`voxbus serve ingest` + `voxbus serve echo` over real Kafka and Redis; and one bare hop."""
    ingest_port, echo_port = free_port(), free_port()
    with voxbus_env(f"benchecho{ingest_port}.", args.streams) as env:
        ingest, echo = serve("ingest", ingest_port, env, cores), serve("echo", echo_port, env, cores)
        try:
            asyncio.run(wait_ready(f"http://127.0.0.1:{ingest_port}/ready"))
            asyncio.run(wait_ready(f"http://127.0.0.1:{echo_port}/ready"))
            topic = f"benchecho{ingest_port}.hop"
            hop = asyncio.run(kafka_hop_ms(env["KAFKA_BOOTSTRAP_SERVERS"], topic, count=args.hop_records))
            pids = {"ingest": ingest.pid, "echo": echo.pid}
            yield Server(VOXBUS, f"ws://127.0.0.1:{ingest_port}", pids, env["REDIS_URL"], kafka=True), hop
        finally:
            stop_processes(ingest, echo)


@contextlib.contextmanager
def embedded(args: argparse.Namespace, cores: set[int] | None) -> Iterator[tuple[Server, list[float]]]:
    with voxbus_up(args.streams, cores=cores) as (base, pid):
        yield Server(EMBEDDED, base.replace("http://", "ws://"), {"voxbus up": pid}), []


VOXBUS, EMBEDDED = "voxbus ingest+echo over Kafka", "voxbus up (embedded)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser)
    parser.add_argument(
        "--delays",
        type=lambda text: [int(delay) for delay in text.split(",")],
        default=[0, 1000],
        help="comma-separated echo delays in ms (default 0,1000)",
    )
    parser.add_argument(
        "--embedded", action="store_true", help="voxbus as one `voxbus up` process (in-process bus and store)"
    )
    parser.add_argument(
        "--pin",
        type=int,
        help="run the servers on this core only, and the load generator on the others (e.g. --pin 1)",
    )
    parser.add_argument(
        "--hop-records",
        type=int,
        default=250,
        help="records of the bare Kafka hop measured first (default 250)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here (for bench/suite.py)")
    args = parser.parse_args()
    cores = {args.pin} if args.pin is not None else None
    with contextlib.ExitStack() as stack:
        ours, hop = stack.enter_context((embedded if args.embedded else distributed)(args, cores))
        baseline = stack.enter_context(bare_echo(cores))
        results, busy = measure_all([baseline, ours], args)
    report(results, busy, hop, args)
    write_json(
        args.json,
        {
            "streams": args.streams,
            "seconds": args.seconds,
            "mode": "embedded" if args.embedded else "distributed",
            "pinned_core": args.pin,
            "client": args.client,
            "hop_ms": {"p50": percentile(hop, 0.5), "p99": percentile(hop, 0.99)} if hop else None,
            "busy": busy,
            "runs": [result.as_dict(name, delay) for (delay, name), result in results.items()],
        },
    )


if __name__ == "__main__":
    main()
