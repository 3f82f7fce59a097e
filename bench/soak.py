"""The soak (docs/soak.md): voxbus as separate services over real Kafka and Redis, at 80 % of the
streams this machine carries by the benchmark suite's own costs, for 30 minutes; then every
recording checked byte for byte.

    uv run --frozen python -m bench.soak                 # 30 minutes, writes docs/soak.md
    uv run --frozen python -m bench.soak --minutes 3 --out /tmp/soak   # the CI version

Sessions on `/api/ws/audio` (16 kHz PCM, echo at delay 0) stream 20 ms frames at real time, each
closed after `--session-seconds` and followed at once by the next (bench/loadgen/soak.mjs).
Every 10 s: each process's RSS, each consumer group's lag (from the services' /metrics), and the
window's ack and echo latency percentiles. At the end, every completed session's WAV must hold
exactly the frames the client was acked, in order; the exit status is 1 if any frame acked is
missing or changed, or any session failed.
"""

import argparse
import asyncio
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import LOADGEN, local_broker_pids, serve, stop_processes, voxbus_env, wait_ready
from bench.soak_report import current_commit, write_report
from voxbus.devinfra.ports import free_port

log = logging.getLogger("soak")
SERVICES = ("ingest", "transcoder", "writer", "echo")
SAMPLE_SECONDS = 10.0
FRAME_BYTES = 640  # 20 ms of 16 kHz mono s16le
FRAMES_PER_SECOND = 50
_LAG = re.compile(r"^voxbus_(\w+)_consumer_lag_records\{[^}]*\} ([0-9.e+-]+)$", re.MULTILINE)


def frame(stream: int, n: int) -> bytes:
    """The frame bench/loadgen/soak.mjs sends: u32 LE stream, u32 LE frame number, a pattern."""
    pattern = ((n + np.arange(8, FRAME_BYTES)) & 0xFF).astype(np.uint8).tobytes()
    return stream.to_bytes(4, "little") + n.to_bytes(4, "little") + pattern


def planned_streams(benchmarks: Path, share: float) -> tuple[int, str]:
    """`share` of the streams this machine's cores carry at the suite's measured CPU per frame
    (every service and the broker, docs/capacity.md); and how that was worked out."""
    capacity = json.loads(benchmarks.read_text())["capacity"]
    costs = capacity["costs_us_per_frame"]
    per_frame = sum(costs.values()) + capacity["broker_us_per_frame"]
    cores = os.cpu_count() or 1
    carried = cores * 1e6 / per_frame / FRAMES_PER_SECOND
    streams = max(1, math.floor(share * carried))
    how = (
        f"{cores} cores / ({' + '.join(f'{name} {cost:.0f}' for name, cost in costs.items())}"
        f" + broker {capacity['broker_us_per_frame']:.0f} = {per_frame:.0f} µs per frame)"
        f" / {FRAMES_PER_SECOND} frames/s = {carried:.1f} streams; {share:.0%} of that is {streams}"
    )
    return streams, how


def rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match[1]) / 1024 if match else None


@dataclass
class Sample:
    t: float  # seconds since the load began
    rss_mib: dict[str, float | None]
    lag: dict[str, float]  # the largest consumer lag each service reports


@dataclass
class Soak:
    streams: int
    minutes: float
    session_seconds: float
    plan: str
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    commit: str = field(default_factory=current_commit)
    samples: list[Sample] = field(default_factory=list)
    windows: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)


async def lags(http: aiohttp.ClientSession, ports: dict[str, int]) -> dict[str, float]:
    found: dict[str, float] = {}
    for port in ports.values():
        try:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                text = await response.text()
        except aiohttp.ClientError:
            continue
        for service, value in _LAG.findall(text):
            found[service] = max(found.get(service, 0.0), float(value))
    return found


async def run_load(soak: Soak, base: str, pids: dict[str, int], ports: dict[str, int]) -> None:
    node = await asyncio.create_subprocess_exec(
        "node",
        str(LOADGEN / "soak.mjs"),
        base.replace("http", "ws"),
        str(soak.streams),
        str(soak.minutes * 60),
        str(soak.session_seconds),
        stdout=asyncio.subprocess.PIPE,
        limit=1 << 26,  # the final line lists every session
    )
    begin = time.monotonic()

    async def sample() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            while True:
                rss = {name: rss_mib(pid) for name, pid in pids.items()}
                soak.samples.append(Sample(round(time.monotonic() - begin, 1), rss, await lags(http, ports)))
                await asyncio.sleep(SAMPLE_SECONDS)  # a sampling period, not a wait for an event

    sampler = asyncio.create_task(sample(), name="soak-sampler")
    try:
        assert node.stdout is not None
        async for line in node.stdout:
            document = json.loads(line)
            if document.get("final"):
                soak.final = document
            else:
                soak.windows.append(document)
                log.info(
                    "t=%ss sent %s acked %s echoed %s sessions %s failed %s ack p99 %s ms echo p99 %s ms",
                    document["t"],
                    document["sent"],
                    document["acked"],
                    document["echoed"],
                    document["sessions"],
                    document["failed"],
                    document["ack_ms"][2],
                    document["echo_ms"][2],
                )
        await node.wait()
    finally:
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        if node.returncode is None:
            node.kill()


def check_recordings(storage: Path, sessions: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Every completed session's WAV against the frames it was acked: exactly those, in order."""
    checked = frames = 0
    wrong: list[str] = []
    for entry in sessions:
        if entry["status"] != "completed":
            continue
        first, count = entry["first"], entry["count"]
        expected = b"".join(frame(entry["stream"], n) for n in range(first, first + count))
        samples, rate = soundfile.read(storage / entry["file_path"], dtype="int16")
        recorded = samples.tobytes()
        checked += 1
        frames += count
        if rate != 16000 or recorded != expected:
            wrong.append(f"{entry['session_id']}: {len(recorded)} bytes recorded, {len(expected)} acked")
    not_completed = [entry["session_id"] for entry in sessions if entry["status"] != "completed"]
    return {
        "sessions_checked": checked,
        "frames_checked": frames,
        "sessions_wrong": wrong,
        "sessions_not_completed": not_completed,
    }


def slope_mib_per_hour(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of RSS over time, MiB per hour; None with fewer than 3 points."""
    if len(points) < 3:
        return None
    t, rss = np.array(points).T
    return float(np.polyfit(t / 3600, rss, 1)[0])


async def soak_run(args: argparse.Namespace, soak: Soak) -> None:
    ports = {name: free_port() for name in SERVICES}
    with voxbus_env(f"soak-{os.getpid()}.", soak.streams) as base_env:
        env = {**base_env, "AUDIO_PARTITIONS": "4", "EGRESS_PARTITIONS": "4"}
        processes = {name: serve(name, port, env) for name, port in ports.items()}
        try:
            for port in ports.values():
                await wait_ready(f"http://127.0.0.1:{port}/ready")
            pids = {name: process.pid for name, process in processes.items()}
            for index, broker in enumerate(local_broker_pids()):
                pids[f"kafka broker{'' if index == 0 else f' {index + 1}'}"] = broker
            await run_load(soak, f"http://127.0.0.1:{ports['ingest']}", pids, ports)
            soak.check = check_recordings(Path(env["AUDIO_STORAGE_PATH"]), soak.final.get("sessions", []))
        finally:
            stop_processes(*processes.values())


def summary(soak: Soak) -> dict[str, Any]:
    """What the report states: loss, memory slopes, lag, latency per third of the run."""
    warm = [sample for sample in soak.samples if sample.t >= soak.session_seconds]  # all streams up
    names = sorted({name for sample in soak.samples for name in sample.rss_mib})
    memory = {}
    for name in names:
        points = [(s.t, rss) for s in warm if (rss := s.rss_mib.get(name)) is not None]
        memory[name] = {
            "first_mib": points[0][1] if points else None,
            "last_mib": points[-1][1] if points else None,
            "max_mib": max((p[1] for p in points), default=None),
            "slope_mib_per_hour": slope_mib_per_hour(points),
        }
    services = sorted({name for sample in soak.samples for name in sample.lag})
    lag = {name: max((s.lag.get(name, 0.0) for s in soak.samples), default=0.0) for name in services}
    thirds = []
    windows = [w for w in soak.windows if w["acked"] and w["echoed"]]
    for part in range(3):
        chunk = windows[part * len(windows) // 3 : (part + 1) * len(windows) // 3]
        thirds.append(
            {f"{name}_p{q}_ms": _median(chunk, name, i) for name in ("ack", "echo") for q, i in PERCENTILES}
        )
    final = soak.final
    lost = final.get("sent", 0) - final.get("acked", 0)
    return {
        "memory": memory,
        "max_lag_records": lag,
        "p99_median_by_third": thirds,
        "sent": final.get("sent", 0),
        "acked": final.get("acked", 0),
        "not_acked": lost,
        "echoed": final.get("echoed", 0),
        "echo_missing_at_close": final.get("echo_missing", 0),
        "bad_or_duplicated_or_reordered": final.get("bad", 0)
        + final.get("duplicated", 0)
        + final.get("reordered", 0),
        "sessions": len(final.get("sessions", [])),
        "failed": final.get("failed", 0),
        "first_error": final.get("first_error", ""),
        **soak.check,
    }


PERCENTILES = ((50, 0), (99, 2))  # (percentile, its place in a window's [p50, p95, p99])


def _median(windows: Sequence[dict[str, Any]], name: str, index: int) -> float | None:
    """The median over windows of one of their percentiles (None without windows)."""
    values = [w[f"{name}_ms"][index] for w in windows if w[f"{name}_ms"][index] is not None]
    return float(np.median(values)) if values else None


def zero_loss(result: dict[str, Any]) -> bool:
    return (
        result["sessions"] > 0
        and not result["sessions_wrong"]
        and not result["sessions_not_completed"]
        and result["failed"] == 0
        and result["not_acked"] == 0
        and result["bad_or_duplicated_or_reordered"] == 0
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--session-seconds", type=float, default=60.0)
    parser.add_argument("--share", type=float, default=0.8, help="of the capacity measured (default 0.8)")
    parser.add_argument("--streams", type=int, help="this many streams instead of the share of capacity")
    parser.add_argument("--benchmarks", type=Path, default=Path("docs/benchmarks.json"))
    parser.add_argument("--out", type=Path, default=Path("docs"), help="where soak.md goes (images/ beside)")
    parser.add_argument("--from", dest="source", type=Path, help="write the report again from a soak.json")
    args = parser.parse_args(argv)
    if args.source is not None:
        document = json.loads(args.source.read_text())
        write_report(args.out, document, document["result"])
        return 0 if zero_loss(document["result"]) else 1
    streams, plan = planned_streams(args.benchmarks, args.share)
    if args.streams is not None:
        streams, plan = args.streams, f"{args.streams} streams, as asked (--streams)"
    soak = Soak(streams=streams, minutes=args.minutes, session_seconds=args.session_seconds, plan=plan)
    log.info("soak: %s streams for %s min (%s)", streams, args.minutes, plan)
    asyncio.run(soak_run(args, soak))
    result = summary(soak)
    args.out.mkdir(parents=True, exist_ok=True)
    write_report(args.out, asdict(soak), result)
    kept = {name: value for name, value in asdict(soak).items() if name != "final"}  # not every session
    (args.out / "soak.json").write_text(json.dumps({**kept, "result": result}, indent=1) + "\n")
    ok = zero_loss(result)
    log.info("soak %s: %s", "passed" if ok else "FAILED", json.dumps(result)[:2000])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
