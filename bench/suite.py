"""The benchmark suite: every scenario next to its same-run baseline, then the report.

Starts one Kafka broker and one Redis (local processes from voxbus.devinfra, or
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL) and runs the benchmark scripts one after another, each as
its own process with `--json`, so that no scenario pays for another's leftovers:

- bench/kafka_floor.py: the bus's limit (a plain aiokafka hop, Kafka's EndToEndLatency and
  ProducerPerformance tools, voxbus's own producer);
- bench/ingest_acks.py: session acks at 100 streams over Kafka, embedded, and 2 ingest processes
  against 1 at a load both carry (the capacity model's check);
- bench/echo_latency.py: /ws/audio at delay 0 and 1000 over Kafka, and embedded on one core;
- bench/telephony.py: Vonage echo calls, embedded and over Kafka and Redis (all five services);
- bench/recording_path.py: transcode + write real-time factors per codec, 1-minute and 2-hour;
- bench/memory.py: memory per idle connection and per active stream.

Then it writes the report (bench/report.py): `docs/benchmarks.md`, `docs/benchmarks.json`,
`docs/images/bench-*.png` and `docs/capacity.md` (bench/capacity.py); with `--out DIR`, there
instead. `--smoke` runs every scenario at a tiny load in about four minutes and judges no target:
CI runs it so that the suite keeps working.

Usage: make bench                                   (the full run, about 17 minutes)
       uv run python -m bench.suite --smoke --out /tmp/bench
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import LOADGEN
from bench.report import write_report
from voxbus.devinfra import provide_kafka, provide_redis

logger = logging.getLogger("bench.suite")

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PIN = str((os.cpu_count() or 1) - 1)  # the core the embedded server runs on; the load generator gets the rest


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    script: str
    full: tuple[str, ...]
    smoke: tuple[str, ...]
    load: bool = True  # takes --client (a WebSocket load generator)


SMOKE_LOAD = ("--seconds", "1.5", "--warmup", "1")
SMOKE_HOP = ("--hop-records", "20")
SCENARIOS = (
    Scenario("kafka_floor", "kafka_floor.py", (), ("--smoke",), load=False),
    Scenario(
        "acks_100", "ingest_acks.py", ("--streams", "100", "--seconds", "15"), ("--streams", "3", *SMOKE_LOAD)
    ),
    Scenario(
        "acks_embedded_100",
        "ingest_acks.py",
        ("--streams", "100", "--seconds", "15", "--embedded"),
        ("--streams", "3", *SMOKE_LOAD, "--embedded"),
    ),
    Scenario(
        "acks_one_instance",
        "ingest_acks.py",
        ("--streams", "40", "--seconds", "15"),
        ("--streams", "4", *SMOKE_LOAD),
    ),
    Scenario(
        "acks_two_instances",
        "ingest_acks.py",
        ("--streams", "40", "--seconds", "15", "--instances", "2"),
        ("--streams", "4", *SMOKE_LOAD, "--instances", "2"),
    ),
    Scenario(
        "echo_20",
        "echo_latency.py",
        ("--streams", "20", "--seconds", "15", "--delays", "0"),
        ("--streams", "3", *SMOKE_LOAD, *SMOKE_HOP, "--delays", "0"),
    ),
    Scenario(
        "echo_50",
        "echo_latency.py",
        ("--streams", "50", "--seconds", "15", "--delays", "0,1000"),
        ("--streams", "3", *SMOKE_LOAD, *SMOKE_HOP, "--delays", "0,1000"),
    ),
    Scenario(
        "echo_100",
        "echo_latency.py",
        ("--streams", "100", "--seconds", "15", "--delays", "1000"),
        ("--streams", "3", *SMOKE_LOAD, *SMOKE_HOP, "--delays", "1000"),
    ),
    Scenario(
        "echo_embedded_100",
        "echo_latency.py",
        ("--streams", "100", "--seconds", "15", "--delays", "0,1000", "--embedded", "--pin", PIN),
        ("--streams", "3", *SMOKE_LOAD, "--delays", "0,1000", "--embedded", "--pin", PIN),
    ),
    Scenario(
        "telephony_embedded",
        "telephony.py",
        ("--calls", "20", "50", "--seconds", "12"),
        ("--calls", "2", "--seconds", "1.5", "--warmup", "1"),
        load=False,
    ),
    Scenario(
        "telephony_distributed",
        "telephony.py",
        ("--calls", "20", "50", "--seconds", "12", "--distributed"),
        ("--calls", "2", "--seconds", "1.5", "--warmup", "1", "--distributed"),
        load=False,
    ),
    Scenario(
        "recording",
        "recording_path.py",
        ("--repeat", "3", "--seconds", "60", "--long-minutes", "120"),
        ("--repeat", "1", "--seconds", "3", "--long-minutes", "0.2"),
        load=False,
    ),
    Scenario("memory", "memory.py", (), ("--smoke",), load=False),
)


def run_scenario(
    scenario: Scenario, args: argparse.Namespace, env: dict[str, str], work: Path
) -> dict[str, Any]:
    """One benchmark script with `--json`: its results; its output is kept in `work`/NAME.log."""
    results, log = work / f"{scenario.name}.json", work / f"{scenario.name}.log"
    command = [
        sys.executable,
        str(BENCH / scenario.script),
        *(scenario.smoke if args.smoke else scenario.full),
    ]
    if scenario.load:
        command += ["--client", args.client]
    command += ["--json", str(results)]
    logger.info("%s: %s", scenario.name, " ".join(command[1:]))
    started = time.monotonic()
    with log.open("w") as output:
        done = subprocess.run(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, check=False, cwd=ROOT
        )
    if done.returncode != 0:
        raise SystemExit(
            f"{scenario.name} failed ({done.returncode}); its output:\n{log.read_text()[-6000:]}"
        )
    logger.info("%s: done in %.0f s", scenario.name, time.monotonic() - started)
    document: dict[str, Any] = json.loads(results.read_text())
    document["output"] = log.read_text().splitlines()[-60:]
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--smoke", action="store_true", help="every scenario at a tiny load; no target judged"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs",
        help="where the report goes (default docs/, images in images/)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=[s.name for s in SCENARIOS], help="run these scenarios only (no report)"
    )
    parser.add_argument(
        "--from",
        dest="previous",
        type=Path,
        help="write the report again from a run's benchmarks.json instead of measuring (after editing"
        " bench/findings.md, say)",
    )
    parser.add_argument(
        "--client",
        choices=["node", "python"],
        default="node" if (LOADGEN / "node_modules").is_dir() else "python",
        help="load generator (default node, after `npm ci --prefix bench/loadgen`)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if not args.smoke and args.client != "node":
        parser.error("the full run measures with the Node.js load generator: npm ci --prefix bench/loadgen")
    if args.previous is not None:
        previous = json.loads(args.previous.read_text())
        written = write_report(
            previous["scenarios"], out=args.out, smoke=previous["smoke"], machine=previous["machine"]
        )
        for path in written:
            logger.info("wrote %s", path)
        return
    scenarios = [s for s in SCENARIOS if not args.only or s.name in args.only]
    with provide_kafka() as kafka, provide_redis() as redis, tempfile.TemporaryDirectory() as folder:
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "REDIS_URL": redis.url}
        results = {s.name: run_scenario(s, args, env, Path(folder)) for s in scenarios}
    if args.only:
        json.dump(results, sys.stdout, indent=2)
        return
    for path in write_report(results, out=args.out, smoke=args.smoke):
        logger.info("wrote %s", path)


if __name__ == "__main__":
    main()
