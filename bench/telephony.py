"""Telephony benchmark: concurrent 16 kHz Vonage calls in echo mode, and how evenly callers hear them.

Each call does what Vonage does (docs/protocols/vonage.md): `GET /vonage/answer?…&mode=echo`,
follows the NCCO's websocket endpoint, sends `websocket:connected` with the content-type and the
NCCO's headers, then 640-byte frames (20 ms of 16 kHz L16) at real time, against an accumulated
deadline, for `--seconds`; it keeps the monotonic arrival time of every frame sent back. Every
frame is unique (u32 LE call index, u32 LE frame number, a pattern), so each one that comes back
is matched to the one sent. For each load (`--calls 20 50 100`), pooled over its calls:

- jitter: |interval between consecutive frames a caller receives - 20 ms|, p50 / p99 / max
  (the first frame has no interval: nothing across the start of the echo is counted);
- lost: frames sent whose echo had not come `--delay-ms` + 3 s after the call's last frame;
  size: frames received that are not 640 bytes (Vonage drops the socket for one; must be 0);
  other: anything else received (a duplicate, a frame never sent, a text message);
- delay error: arrival - sent - delay, p50 / p99;
- send jitter p99: the callers' own |interval - 20 ms| between sends, which an echo inherits;
- server CPU (from /proc) per echoed frame, for each process, over the whole run;
- voxbus's pacers by ingest's own clock (`voxbus_ingest_pacer_lateness_seconds` from its
  /metrics): how late they wrote their frames, the server's event loop's share of the jitter.

In the same run, at each load, the baseline: bench/bare_pacer.py, a bare aiohttp server that
answers the same webhook and sends each socket's frames back against an accumulated 20 ms
deadline that starts `delay` after the first one arrived: how even pacing can be on this machine
with this client, and what it costs. Then, for each load, voxbus over the baseline; and where the
machine's CPU went (servers, local Kafka broker, this client: they share its cores). Each run
begins once the servers are idle, so that it does not pay for the backlog of the one before.

voxbus runs embedded (`voxbus up`, the in-process bus and store: the default), or with
`--distributed` as `voxbus serve` ingest, telephony, echo, transcoder and writer processes over
real Kafka and Redis (local processes from voxbus.devinfra, or KAFKA_BOOTSTRAP_SERVERS /
REDIS_URL); there the webhooks go to telephony, and HOST_NAME is ingest's URL, so that the NCCO
points the media socket at ingest (a load balancer's job in a deployment).

`--bunch 2` makes the callers send their frames two at a time every 40 ms (the same rate, bunched
as a jittery network delivers them): what a pacer is for.

Targets: jitter p99 ≤ 5 ms; no frame lost; every frame 640 bytes; delay error ± 20 ms.

Usage: uv run python bench/telephony.py [--calls 20 50 100] [--seconds 12] [--delay-ms 200]
           [--warmup 5] [--distributed] [--bunch 1] [--json results.json]
"""

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import struct
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    CpuShare,
    CpuWatch,
    bare_server,
    cpu_seconds,
    redis_commands,
    serve,
    stop_processes,
    voxbus_env,
    voxbus_up,
    wait_idle,
    wait_ready,
    write_json,
)
from voxbus.devinfra.ports import free_port

FRAME_BYTES = 640  # 20 ms of 16 kHz mono L16
FRAME_SECONDS = 0.02
GRACE = 3.0  # seconds after a call's last frame (on top of the delay) before the rest count as lost
BODIES = [bytes((k + j) & 0xFF for j in range(8, FRAME_BYTES)) for k in range(256)]
SERVICES = ("ingest", "telephony", "echo", "transcoder", "writer")
BASELINE = "bare aiohttp pacer (baseline)"
LATENESS = "voxbus_ingest_pacer_lateness_seconds"  # ingest's histogram: frame sent - its scheduled time


def call_frame(index: int, n: int) -> bytes:
    """Frame `n` of call `index`: u32 LE call index, u32 LE frame number, a pattern."""
    return struct.pack("<II", index, n) + BODIES[n & 0xFF]


@dataclass(slots=True)
class Call:
    """One call as the carrier saw it."""

    index: int
    sent_at: list[float] = field(default_factory=list)  # monotonic, by frame number
    arrivals: list[float] = field(default_factory=list)  # monotonic, every binary frame received
    echoed: dict[int, float] = field(default_factory=dict)  # frame number -> when its echo arrived
    wrong_size: int = 0
    other: int = 0
    error: str = ""
    done_sending: bool = False
    settled: asyncio.Event = field(default_factory=asyncio.Event)  # every frame sent is back


async def listen(ws: aiohttp.ClientWebSocketResponse, call: Call) -> None:
    """Everything the server sends, sorted into echoes (matched to the frame sent) and the rest."""
    async for message in ws:
        now = time.monotonic()
        if message.type != aiohttp.WSMsgType.BINARY:
            call.other += 1
            continue
        data: bytes = message.data
        call.arrivals.append(now)
        if len(data) != FRAME_BYTES:
            call.wrong_size += 1
            continue
        index, n = struct.unpack_from("<II", data)
        if index != call.index or n in call.echoed or n >= len(call.sent_at) or data != call_frame(index, n):
            call.other += 1
            continue
        call.echoed[n] = now
        if call.done_sending and len(call.echoed) == len(call.sent_at):
            call.settled.set()


async def speak(ws: aiohttp.ClientWebSocketResponse, call: Call, seconds: float, bunch: int) -> None:
    """20 ms frames at real time for `seconds`: the next send time is accumulated, so no drift.
    With `bunch` > 1, that many frames go back to back every `bunch` x 20 ms (a jittery network)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    for n in range(round(seconds / FRAME_SECONDS)):
        if n % bunch == 0 and (wait := deadline - loop.time()) > 0:
            await asyncio.sleep(wait)
        if ws.closed:
            return
        call.sent_at.append(time.monotonic())
        await ws.send_bytes(call_frame(call.index, n))
        deadline += FRAME_SECONDS


async def place_call(
    http: aiohttp.ClientSession,
    base: str,
    call_id: str,
    call: Call,
    *,
    seconds: float,
    delay: float,
    bunch: int,
) -> None:
    """The answer webhook, the NCCO's media socket, `seconds` of frames; back once they are echoed."""
    query = {
        "to": "447700900001",
        "from": "447700900000",
        "uuid": call_id,
        "conversation_uuid": f"CON-{call_id}",
        "mode": "echo",
    }
    async with http.get(f"{base}/vonage/answer", params=query) as response:
        if response.status != 200:
            call.error = f"answer webhook: {response.status} {(await response.text())[:200]}"
            return
        ncco = await response.json()
    endpoint = next(action for action in ncco if action["action"] == "connect")["endpoint"][0]
    async with http.ws_connect(endpoint["uri"]) as ws:
        connected = {
            "event": "websocket:connected",
            "content-type": endpoint["content-type"],
            **endpoint.get("headers", {}),
        }
        await ws.send_str(json.dumps(connected))
        reader = asyncio.create_task(listen(ws, call), name=f"call-reader-{call.index}")
        try:
            await speak(ws, call, seconds, bunch)
            call.done_sending = True
            if len(call.echoed) < len(call.sent_at):
                with contextlib.suppress(TimeoutError):  # what is still out by then is lost
                    async with asyncio.timeout(delay + GRACE):
                        await call.settled.wait()
            closed_early = ws.closed
        finally:
            await ws.close()  # ends listen's loop
            await reader
        if closed_early:
            call.error = f"the server closed the media socket ({ws.close_code})"


async def run_calls(
    base: str, count: int, *, seconds: float, delay_ms: int, run: str, bunch: int = 1
) -> list[Call]:
    """`count` concurrent calls, their starts spread over a second (calls are not in phase)."""
    calls = [Call(index) for index in range(count)]

    async def one(http: aiohttp.ClientSession, call: Call) -> None:
        await asyncio.sleep(call.index / count)
        try:
            await place_call(
                http,
                base,
                f"BENCH-{run}-{call.index}",
                call,
                seconds=seconds,
                delay=delay_ms / 1000,
                bunch=bunch,
            )
        except (aiohttp.ClientError, OSError, ValueError, LookupError, StopIteration) as exc:
            call.error = f"{type(exc).__name__}: {exc}"

    # no pool limit: every call holds a connection for its socket
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        await asyncio.gather(*(one(http, call) for call in calls))
    return calls


def percentile(ordered: Sequence[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def jitters_ms(times: Sequence[float]) -> list[float]:
    """|interval - 20 ms| between consecutive times, in ms."""
    return [abs(1000 * (b - a) - 1000 * FRAME_SECONDS) for a, b in itertools.pairwise(times)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """One server at one load. Times in ms; CPU in µs per echoed frame, by process."""

    calls: int
    failed: int
    first_error: str
    sent: int
    received: int  # frames matched to one sent
    lost: int
    wrong_size: int
    other: int
    jitter_p50: float
    jitter_p99: float
    jitter_max: float
    delay_error_p50: float
    delay_error_p99: float
    send_jitter_p99: float
    cpu_us_per_frame: dict[str, float]
    share: CpuShare
    pacer: "PacerLateness | None"  # voxbus's own measure; None for the baseline
    redis_commands_per_frame: float | None = None  # over Redis only

    @classmethod
    def of(
        cls,
        calls: Sequence[Call],
        delay_ms: int,
        cpu: dict[str, float],
        share: CpuShare,
        pacer: "PacerLateness | None",
    ) -> "Stats":
        jitter = sorted(j for call in calls for j in jitters_ms(call.arrivals))
        send_jitter = sorted(j for call in calls for j in jitters_ms(call.sent_at))
        errors = sorted(
            1000 * (arrived - call.sent_at[n]) - delay_ms
            for call in calls
            for n, arrived in call.echoed.items()
        )
        received = sum(len(call.echoed) for call in calls)
        failed = [call.error for call in calls if call.error]
        return cls(
            calls=len(calls),
            failed=len(failed),
            first_error=failed[0] if failed else "",
            sent=sum(len(call.sent_at) for call in calls),
            received=received,
            lost=sum(len(call.sent_at) - len(call.echoed) for call in calls),
            wrong_size=sum(call.wrong_size for call in calls),
            other=sum(call.other for call in calls),
            jitter_p50=percentile(jitter, 0.5),
            jitter_p99=percentile(jitter, 0.99),
            jitter_max=percentile(jitter, 1.0),
            delay_error_p50=percentile(errors, 0.5),
            delay_error_p99=percentile(errors, 0.99),
            send_jitter_p99=percentile(send_jitter, 0.99),
            cpu_us_per_frame={name: 1e6 * seconds / max(received, 1) for name, seconds in cpu.items()},
            share=share,
            pacer=pacer,
        )

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_us_per_frame.values())

    def row(self, server: str) -> str:
        counts = (
            f"{self.calls:5d} {self.sent:7d} {self.received:7d} {self.lost:5d} {self.wrong_size:4d}"
            f" {self.other:5d}"
        )
        jitter = f"{self.jitter_p50:6.2f} {self.jitter_p99:6.2f} {self.jitter_max:7.1f}"
        delay = f"{self.delay_error_p50:7.1f} {self.delay_error_p99:7.1f}"
        return f"{server:29} {counts} {jitter} {delay} {self.send_jitter_p99:8.2f} {self.cpu_total:8.0f}"


HEADER = (
    f"{'server':29} {'calls':>5} {'sent':>7} {'recv':>7} {'lost':>5} {'size':>4} {'other':>5}"
    f" {'jitter p50':>13} {'p99':>6} {'max':>7} {'delay err p50':>13}"
    f" {'p99':>7} {'send p99':>8} {'CPU us/frame':>12}"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PacerLateness:
    """How late voxbus's pacers wrote their frames, by ingest's own clock, over one run: what its
    event loop adds to the caller's jitter (the rest is the network's and the client's)."""

    frames: int
    mean_ms: float
    over_5ms: float  # fractions of the frames
    over_20ms: float

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float]) -> "PacerLateness":
        def grew(name: str) -> float:
            return after.get(name, 0.0) - before.get(name, 0.0)

        frames = grew("count")
        return cls(
            frames=int(frames),
            mean_ms=1000 * grew("sum") / frames if frames else float("nan"),
            over_5ms=1 - grew("0.005") / frames if frames else float("nan"),
            over_20ms=1 - grew("0.02") / frames if frames else float("nan"),
        )


def pacer_lateness(metrics_url: str) -> dict[str, float]:
    """Ingest's lateness histogram for Vonage sockets: cumulative counts by bucket bound, `count`, `sum`."""
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(LATENESS) and 'protocol="vonage"' in line:
            name, value = line.rsplit(" ", 1)
            if name.startswith(f"{LATENESS}_bucket"):
                values[name.split('le="', 1)[1].split('"', 1)[0]] = float(value)
            elif name.startswith((f"{LATENESS}_count", f"{LATENESS}_sum")):
                values[name.split("{", 1)[0].rsplit("_", 1)[1]] = float(value)
    return values


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    base: str  # where the answer webhook goes
    pids: dict[str, int]  # by process name
    metrics: str | None = None  # ingest's /metrics (voxbus only)
    redis_url: str | None = None  # the store, if Redis: its commands per frame are counted
    kafka: bool = False  # uses the local Kafka broker (whose CPU then counts as its own)


def measure(server: Server, count: int, args: argparse.Namespace, run: str) -> Stats:
    lateness = pacer_lateness(server.metrics) if server.metrics else {}
    redis_before = redis_commands(server.redis_url) if server.redis_url else 0
    before = {name: cpu_seconds(pid) for name, pid in server.pids.items()}
    with CpuWatch(list(server.pids.values()), brokers=server.kafka) as watch:
        calls = asyncio.run(
            run_calls(
                server.base, count, seconds=args.seconds, delay_ms=args.delay_ms, run=run, bunch=args.bunch
            )
        )
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in server.pids.items()}
    assert watch.share is not None
    pacer = PacerLateness.between(lateness, pacer_lateness(server.metrics)) if server.metrics else None
    stats = Stats.of(calls, args.delay_ms, cpu, watch.share, pacer)
    if server.redis_url is None:
        return stats
    commands = redis_commands(server.redis_url) - redis_before
    return dataclasses.replace(stats, redis_commands_per_frame=commands / max(stats.received, 1))


@contextlib.contextmanager
def baseline(delay_ms: int) -> Iterator[Server]:
    with bare_server("bare_pacer.py", str(delay_ms)) as (base, pid):
        yield Server(BASELINE, base, {"bare pacer": pid})


@contextlib.contextmanager
def embedded(args: argparse.Namespace) -> Iterator[Server]:
    """`voxbus up` with the in-process bus and store."""
    with voxbus_up(max(args.calls), {"ECHO_DELAY_MS": str(args.delay_ms)}) as (base, pid):
        yield Server("voxbus up (embedded)", base, {"voxbus up": pid}, f"{base}/metrics")


@contextlib.contextmanager
def distributed(args: argparse.Namespace) -> Iterator[Server]:
    ports = {name: free_port() for name in SERVICES}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    with voxbus_env(f"benchtel{ports['ingest']}.", max(args.calls)) as common:
        env = {**common, "HOST_NAME": urls["ingest"], "ECHO_DELAY_MS": str(args.delay_ms)}
        processes = {name: serve(name, port, env) for name, port in ports.items()}
        try:
            for url in urls.values():
                asyncio.run(wait_ready(f"{url}/ready"))
            pids = {name: process.pid for name, process in processes.items()}
            metrics = f"{urls['ingest']}/metrics"
            yield Server(
                "voxbus over Kafka+Redis", urls["telephony"], pids, metrics, env["REDIS_URL"], kafka=True
            )
        finally:
            stop_processes(*processes.values())


def idle_cpu(servers: Sequence[Server], seconds: float = 5.0) -> dict[str, float]:
    """Each process's CPU with no calls: ms per second."""
    pids = {name: pid for server in servers for name, pid in server.pids.items()}
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: 1000 * (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.1f}x" if theirs > 0 else "n/a"


def report(
    results: dict[tuple[int, str], Stats],
    voxbus: str,
    idle: dict[str, float],
    busy: list[str],
    args: argparse.Namespace,
) -> None:
    loads = ", ".join(map(str, args.calls))
    bunched = f" sent {args.bunch} at a time every {20 * args.bunch} ms" if args.bunch > 1 else ""
    print(
        f"{loads} concurrent 16 kHz Vonage calls in echo mode (ECHO_DELAY_MS {args.delay_ms}),"
        f" {args.seconds:g} s of 20 ms frames each{bunched}, against {voxbus} and {BASELINE};"
        f" after {args.warmup:g} s of warm-up at {max(args.calls)} calls"
    )
    print(
        "jitter: |interval between frames a caller receives - 20 ms| in ms, pooled over the calls;"
        " delay err: arrival - sent - delay; send p99: the callers' own jitter between sends;"
        " lost: never echoed; size: frames not 640 bytes; other: duplicates, unknown frames, text;"
        " CPU: the server's, per frame echoed"
    )
    print(HEADER)
    for (_, server), stats in results.items():
        print(stats.row(server))
    for count in args.calls:
        ours, theirs = results[count, voxbus], results[count, BASELINE]
        print(
            f"{count} calls, voxbus over the baseline: jitter p50"
            f" {ratio(ours.jitter_p50, theirs.jitter_p50)}, p99 {ratio(ours.jitter_p99, theirs.jitter_p99)};"
            " CPU per frame"
            f" {ratio(ours.cpu_total, theirs.cpu_total)}"
        )
    print(
        "idle, no calls (ms CPU per second; inside every per-frame figure, spread over 50 frames/s a call):"
        f" {', '.join(f'{name} {ms:.1f}' for name, ms in idle.items())}"
    )
    for count in args.calls:
        processes = [
            f"{name} {us:.0f} (idle {1000 * idle[name] / (count / FRAME_SECONDS):.0f})"
            for server in (voxbus, BASELINE)
            for name, us in results[count, server].cpu_us_per_frame.items()
        ]
        print(f"{count} calls, CPU per echoed frame by process, us (of which idle): {', '.join(processes)}")
    for count in args.calls:
        if (pacer := results[count, voxbus].pacer) is not None:
            print(
                f"{count} calls, voxbus's pacers by ingest's own clock (its event loop's share of the"
                f" jitter): {pacer.frames} frames, {pacer.mean_ms:.2f} ms late on average,"
                f" {pacer.over_5ms:.2%} over 5 ms late, {pacer.over_20ms:.2%} over 20 ms"
            )
    for (count, server), stats in results.items():
        if stats.failed:
            print(f"{server}, {count} calls: {stats.failed} calls failed, the first: {stats.first_error}")
    for run in busy:
        print(f"{run}: began with the servers still busy after a 30 s wait (the run before's backlog)")
    for (count, server), stats in results.items():
        print(f"CPU during {server}, {count} calls: {stats.share.line()}")


def results_document(
    results: dict[tuple[int, str], Stats], idle: dict[str, float], args: argparse.Namespace
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = [
        {"server": server, **dataclasses.asdict(stats)} for (_, server), stats in results.items()
    ]
    settings = {
        "seconds": args.seconds,
        "delay_ms": args.delay_ms,
        "bunch": args.bunch,
        "distributed": args.distributed,
    }
    return {**settings, "cores": os.cpu_count(), "idle_ms_per_second": idle, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[20, 50, 100], help="loads, e.g. 20 50 100")
    parser.add_argument("--seconds", type=float, default=12.0, help="audio each call sends per run")
    parser.add_argument("--delay-ms", type=int, default=200, help="ECHO_DELAY_MS (default 200)")
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="seconds of calls at the largest load, not measured"
    )
    parser.add_argument(
        "--distributed", action="store_true", help="voxbus as separate services over Kafka and Redis"
    )
    parser.add_argument(
        "--bunch",
        type=int,
        default=1,
        help="callers send this many frames back to back every N x 20 ms, as they arrive over a jittery"
        " network (default 1: one every 20 ms)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.bunch < 1:
        parser.error("--bunch is at least 1")
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(baseline(args.delay_ms)),
            stack.enter_context(distributed(args) if args.distributed else embedded(args)),
        ]
        everyone = [pid for server in servers for pid in server.pids.values()]
        if args.warmup > 0:  # connections, the bus's first records, the broker's JIT
            for server in servers:
                warm = argparse.Namespace(**{**vars(args), "seconds": args.warmup})
                measure(server, max(args.calls), warm, run="warmup")
        busy: list[str] = []
        if not wait_idle(everyone):
            busy.append("the idle measurement")
        idle = idle_cpu(servers)
        results: dict[tuple[int, str], Stats] = {}
        for run, count in enumerate(args.calls):  # the run keeps call ids apart in the call records
            for server in servers:
                if not wait_idle(everyone):
                    busy.append(f"{server.name}, {count} calls")
                results[count, server.name] = measure(server, count, args, run=str(run))
    report(results, servers[1].name, idle, busy, args)
    write_json(args.json, results_document(results, idle, args))


if __name__ == "__main__":
    main()
