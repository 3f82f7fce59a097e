"""Ingest benchmark: concurrent 16 kHz streams of 20 ms frames at real time into /api/ws/audio.

Runs `voxbus serve ingest` over real Kafka and Redis (local processes from voxbus.devinfra, or
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL), and, in the same run, a bare aiohttp WebSocket sink that
acks each frame at once (bench/bare_sink.py). Prints, for each: ack latency p50/p99 (send →
ack received, measured by the client) and server CPU per frame (from /proc), after `--warmup`
seconds of the same load; then where the machine's CPU went in each run (server, local Kafka
broker, load generator), since all of them share its cores. Targets (issue #4):
ack p99 ≤ 25 ms at 200 streams; ingest CPU per frame ≤ 2x the bare sink's.

Usage: npm ci --prefix bench/loadgen   (once: the Node.js load generator, so the client's CPU
       stays out of the measurement; without it a Python client is used)
       uv run python bench/ingest_acks.py [--streams 200] [--seconds 20]
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import LOADGEN, CpuShare, CpuWatch, add_load_arguments, serve, voxbus_env, wait_ready
from tests.helpers import free_port

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


@dataclass(frozen=True, slots=True)
class Result:
    p50_ms: float
    p99_ms: float
    frames: int
    cpu_us_per_frame: float
    share: CpuShare


async def measure(base: str, pid: int, args: argparse.Namespace) -> Result:
    url = f"{base}/api/ws/audio?sample_rate=16000&format=pcm"
    if args.warmup > 0:
        await streams_of(url, args.streams, args.warmup, args.client)
    with CpuWatch([pid]) as watch:
        latencies, frames = await streams_of(url, args.streams, args.seconds, args.client)
    assert watch.share is not None
    latencies.sort()
    return Result(
        p50_ms=1000 * statistics.median(latencies),
        p99_ms=1000 * latencies[int(0.99 * (len(latencies) - 1))],
        frames=frames,
        cpu_us_per_frame=1e6 * watch.server_seconds / max(frames, 1),
        share=watch.share,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser)
    args = parser.parse_args()
    sink_port, ingest_port = free_port(), free_port()
    with voxbus_env(f"bench{ingest_port}.", args.streams) as env:
        sink = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("bare_sink.py")), str(sink_port)]
        )
        ingest = serve("ingest", ingest_port, env)
        try:
            asyncio.run(wait_ready(f"http://127.0.0.1:{sink_port}/"))
            asyncio.run(wait_ready(f"http://127.0.0.1:{ingest_port}/ready"))
            sink_result = asyncio.run(measure(f"http://127.0.0.1:{sink_port}", sink.pid, args))
            if profile := os.environ.get("VOXBUS_PROFILE"):  # py-spy, if installed: where ingest spends
                record = ["py-spy", "record", "-f", "raw", "-o", profile, "-d", str(int(args.seconds))]
                subprocess.Popen([*record, "-p", str(ingest.pid)])
            results = {
                "bare aiohttp sink (baseline)": sink_result,
                "voxbus ingest over Kafka": asyncio.run(
                    measure(f"http://127.0.0.1:{ingest_port}", ingest.pid, args)
                ),
            }
        finally:
            for process in (sink, ingest):
                process.terminate()
                process.wait(timeout=30)
    print(f"{args.streams} streams x 20 ms frames for {args.seconds:g} s ({args.client} load generator)")
    print(f"{'server':32} {'ack p50 ms':>10} {'ack p99 ms':>10} {'frames':>8} {'CPU us/frame':>13}")
    for name, r in results.items():
        print(f"{name:32} {r.p50_ms:10.1f} {r.p99_ms:10.1f} {r.frames:8d} {r.cpu_us_per_frame:13.0f}")
    base, ours = results["bare aiohttp sink (baseline)"], results["voxbus ingest over Kafka"]
    if base.cpu_us_per_frame > 0:
        print(f"ingest CPU per frame: {ours.cpu_us_per_frame / base.cpu_us_per_frame:.2f}x the bare sink's")
    else:  # a tiny load can finish inside one CPU-clock tick of the baseline
        print("ingest CPU per frame: n/a (the bare sink used no measurable CPU)")
    for name, r in results.items():
        print(f"CPU during {name}: {r.share.line()}")


if __name__ == "__main__":
    main()
