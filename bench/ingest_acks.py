"""Ingest benchmark: concurrent 16 kHz streams of 20 ms frames at real time into /api/ws/audio.

Runs `voxbus serve ingest` over real Kafka and Redis (local processes from voxbus.devinfra, or
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL), and, in the same run, a bare aiohttp WebSocket sink that
acks each frame at once (bench/bare_sink.py). `--embedded` runs one `voxbus up` process (in-process
bus and store, and so also transcoding and writing) instead; `--instances 2` runs two ingest
processes and deals the streams out between them. Prints, for each: ack latency p50/p99 (send →
ack received, measured by the client) and server CPU per frame (from /proc), after `--warmup`
seconds of the same load; then where the machine's CPU went in each run (server, local Kafka
broker, load generator), since all of them share its cores. The targets are bench/suite.py's
(docs/benchmarks.md), which runs this script.

Usage: npm ci --prefix bench/loadgen   (once: the Node.js load generator, so the client's CPU
       stays out of the measurement; without it a Python client is used)
       uv run python bench/ingest_acks.py [--streams 100] [--seconds 20] [--embedded | --instances 2]
           [--json results.json]
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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

FRAME = bytes(640)  # 20 ms of 16 kHz mono s16le


async def stream(
    url: str, seconds: float, start_delay: float, latencies: list[float], frames: list[int]
) -> None:
    await asyncio.sleep(start_delay)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        hello = await ws.receive()
        if hello.type != aiohttp.WSMsgType.TEXT:
            raise RuntimeError(f"{url} refused the stream: {ws.close_code} {hello.type} {hello.data!r}")
        sent: deque[float] = deque()
        all_acked = asyncio.Event()
        finished_sending = False

        async def read_acks() -> None:
            while (await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                latencies.append(time.perf_counter() - sent.popleft())
                frames[0] += 1
                if finished_sending and not sent:
                    all_acked.set()

        reader = asyncio.create_task(read_acks())
        begin = time.perf_counter()
        n = 0
        while time.perf_counter() - begin < seconds:
            n += 1
            sent.append(time.perf_counter())
            await ws.send_bytes(FRAME)
            await asyncio.sleep(max(0.0, begin + n * 0.02 - time.perf_counter()))
        finished_sending = True
        if sent:
            try:
                async with asyncio.timeout(30):  # the last acks
                    await all_acked.wait()
            except TimeoutError:
                raise RuntimeError(f"{len(sent)} of {n} frames never acknowledged") from None
        reader.cancel()


def node_streams(url: str, streams: int, seconds: float) -> tuple[list[float], int]:
    """The Node.js load generator (bench/loadgen): its client CPU stays out of the way."""
    output = subprocess.run(
        ["node", str(LOADGEN / "loadgen.mjs"), url.replace("http://", "ws://"), str(streams), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result = json.loads(output.splitlines()[-1])
    if result["missing"]:
        raise RuntimeError(f"{result['missing']} frames never acknowledged")
    return [ms / 1000 for ms in result["latencies_ms"]], result["frames"]


async def streams_of(url: str, streams: int, seconds: float, client: str) -> tuple[list[float], int]:
    """Ack latencies (s) and frames acknowledged."""
    if client == "node":
        return await asyncio.to_thread(node_streams, url, streams, seconds)
    latencies: list[float] = []
    frames = [0]
    await asyncio.gather(*(stream(url, seconds, i / streams, latencies, frames) for i in range(streams)))
    return latencies, frames[0]


async def spread(urls: Sequence[str], streams: int, seconds: float, client: str) -> tuple[list[float], int]:
    """`streams` streams dealt out over the servers at `urls` (what a load balancer does)."""
    shares = [streams // len(urls) + (i < streams % len(urls)) for i in range(len(urls))]
    parts = await asyncio.gather(
        *(streams_of(url, share, seconds, client) for url, share in zip(urls, shares, strict=True) if share)
    )
    return [latency for latencies, _ in parts for latency in latencies], sum(frames for _, frames in parts)


@dataclass(frozen=True, slots=True)
class Server:
    name: str
    bases: list[str]  # http://host:port of each instance
    pids: list[int]
    redis_url: str | None = None  # the store, if Redis: its commands per frame are counted
    kafka: bool = False  # uses the local Kafka broker (whose CPU then counts as its own)


@dataclass(frozen=True, slots=True)
class Result:
    p50_ms: float
    p99_ms: float
    frames: int
    cpu_us_per_frame: float
    redis_commands_per_frame: float | None
    share: CpuShare

    def as_dict(self, server: str) -> dict[str, Any]:
        return {"server": server, **dataclasses.asdict(self), "share": self.share.as_dict()}


async def measure(server: Server, args: argparse.Namespace) -> Result:
    urls = [f"{base}/api/ws/audio?sample_rate=16000&format=pcm" for base in server.bases]
    if args.warmup > 0:
        await spread(urls, args.streams, args.warmup, args.client)
    await asyncio.to_thread(wait_idle, server.pids)  # the warm-up's leftovers are not this run's
    redis_before = redis_commands(server.redis_url) if server.redis_url else 0
    with CpuWatch(server.pids, brokers=server.kafka) as watch:
        latencies, frames = await spread(urls, args.streams, args.seconds, args.client)
        # the work the load left behind (a recording that fell behind, say) is the load's too
        await asyncio.to_thread(wait_idle, server.pids)
    assert watch.share is not None
    latencies.sort()
    return Result(
        p50_ms=1000 * percentile(latencies, 0.5),
        p99_ms=1000 * percentile(latencies, 0.99),
        frames=frames,
        cpu_us_per_frame=1e6 * watch.server_seconds / max(frames, 1),
        redis_commands_per_frame=(
            (redis_commands(server.redis_url) - redis_before) / max(frames, 1) if server.redis_url else None
        ),
        share=watch.share,
    )


BASELINE = "bare aiohttp sink (baseline)"


@contextlib.contextmanager
def bare_sink() -> Iterator[Server]:
    with bare_server("bare_sink.py") as (base, pid):
        yield Server(BASELINE, [base], [pid])


@contextlib.contextmanager
def distributed(args: argparse.Namespace) -> Iterator[Server]:
    """`--instances` processes of `voxbus serve ingest` over real Kafka and Redis."""
    ports = [free_port() for _ in range(args.instances)]
    with voxbus_env(f"bench{ports[0]}.", args.streams) as env:
        processes = [serve("ingest", port, env) for port in ports]
        try:
            for port in ports:
                asyncio.run(wait_ready(f"http://127.0.0.1:{port}/ready"))
            name = "voxbus ingest over Kafka" + (f" x{args.instances}" if args.instances > 1 else "")
            bases = [f"http://127.0.0.1:{port}" for port in ports]
            yield Server(name, bases, [process.pid for process in processes], env["REDIS_URL"], kafka=True)
        finally:
            stop_processes(*processes)


@contextlib.contextmanager
def embedded(args: argparse.Namespace) -> Iterator[Server]:
    with voxbus_up(args.streams) as (base, pid):
        yield Server("voxbus up (embedded)", [base], [pid])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser)
    parser.add_argument(
        "--embedded", action="store_true", help="voxbus as one `voxbus up` process (in-process bus and store)"
    )
    parser.add_argument(
        "--instances", type=int, default=1, help="ingest processes sharing the streams (default 1)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here (for bench/suite.py)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(bare_sink()),
            stack.enter_context(embedded(args) if args.embedded else distributed(args)),
        ]
        if profile := os.environ.get("VOXBUS_PROFILE"):  # py-spy, if installed: where ingest spends
            record = ["py-spy", "record", "-f", "raw", "-o", profile, "-d", str(int(args.seconds))]
            subprocess.Popen([*record, "-p", str(servers[1].pids[0])])
        results = {server.name: asyncio.run(measure(server, args)) for server in servers}
    print(f"{args.streams} streams x 20 ms frames for {args.seconds:g} s ({args.client} load generator)")
    print(f"{'server':32} {'ack p50 ms':>10} {'ack p99 ms':>10} {'frames':>8} {'CPU us/frame':>13}")
    for name, r in results.items():
        print(f"{name:32} {r.p50_ms:10.1f} {r.p99_ms:10.1f} {r.frames:8d} {r.cpu_us_per_frame:13.0f}")
    base, ours = results[BASELINE], results[servers[1].name]
    if base.cpu_us_per_frame > 0:
        print(f"ingest CPU per frame: {ours.cpu_us_per_frame / base.cpu_us_per_frame:.2f}x the bare sink's")
    else:  # a tiny load can finish inside one CPU-clock tick of the baseline
        print("ingest CPU per frame: n/a (the bare sink used no measurable CPU)")
    if ours.redis_commands_per_frame is not None:
        print(f"Redis commands per frame: {ours.redis_commands_per_frame:.3f}")
    for name, r in results.items():
        print(f"CPU during {name}: {r.share.line()}")
    write_json(
        args.json,
        {
            "streams": args.streams,
            "seconds": args.seconds,
            "mode": "embedded" if args.embedded else "distributed",
            "instances": 1 if args.embedded else args.instances,
            "client": args.client,
            "runs": [result.as_dict(name) for name, result in results.items()],
        },
    )


if __name__ == "__main__":
    main()
