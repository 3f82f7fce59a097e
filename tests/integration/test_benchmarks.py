"""The benchmark scripts still run end to end (tiny loads, real Kafka and Redis): a user who
runs them gets their table, not a traceback. Their figures are not judged here."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _run(script: str, args: list[str], kafka: KafkaEndpoint, redis: RedisEndpoint) -> str:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers, "REDIS_URL": redis.url}
    done = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


@pytest.mark.timeout(600)  # thirteen scenarios, each starting its servers: about four minutes
def test_suite_smoke_run_writes_the_whole_report(
    kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, tmp_path: Path
) -> None:
    """`make bench`'s suite at tiny loads: every scenario runs, and every page, table, figure and
    picture of the report is written from what they measured (no target is judged)."""
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_endpoint.bootstrap_servers,
        "REDIS_URL": redis_endpoint.url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "bench.suite", "--smoke", "--out", str(tmp_path)],
        env=env,
        cwd=BENCH.parent,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"the suite failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    document = json.loads((tmp_path / "benchmarks.json").read_text())
    assert document["smoke"] is True
    assert set(document["scenarios"]) == {
        "kafka_floor", "acks_100", "acks_embedded_100", "acks_one_instance", "acks_two_instances",
        "echo_20", "echo_50", "echo_100", "echo_embedded_100", "telephony_embedded",
        "telephony_distributed", "recording", "memory",
    }  # fmt: skip
    targets = document["targets"]
    assert len(targets) == 11 and all(t["measured"] is not None for t in targets), targets
    report = (tmp_path / "benchmarks.md").read_text()
    sections = (
        "Targets",
        "The bus's limit",
        "Session acks",
        "Echo",
        "Telephony echo calls",
        "Recording path",
    )
    for section in (*sections, "Memory"):
        assert f"\n## {section}\n" in report
    assert report.count("| not judged |") == len(targets)
    assert "**met**" not in report and "| missed |" not in report
    capacity = (tmp_path / "capacity.md").read_text()
    for service in ("ingest", "telephony", "echo", "transcoder", "writer"):
        assert capacity.count(f"\n| {service} | ") == 2, service  # its cost, and what N streams need
    assert "| 1,000 streams | 10,000 streams | 100,000 streams |" in capacity
    for picture in ("bench-echo-latency.png", "bench-echo-cpu.png"):
        assert (tmp_path / "images" / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_wearables_benchmark_prints_its_table_baselines_and_latency(
    kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    args = ["--streams", "2", "--seconds", "2", "--warmup", "1", "--repeat", "1"]
    out = _run("wearables.py", args, kafka_endpoint, redis_endpoint)
    lines = out.splitlines()
    header = next(
        i for i, line in enumerate(lines) if line.split()[:3] == ["streams", "transcoder", "opuslib"]
    )
    row = lines[header + 1].split()
    assert row[0] == "2" and row[-1] == "0", lines[header + 1]  # 2 streams, no packet missing from the files
    assert any(
        line.startswith("transcoder CPU per stream-second over the plain opuslib loop's") for line in lines
    )
    assert any(line.startswith("socket-to-file p99 (target ≤ 1000 ms): 2 streams") for line in lines)
    assert any(line.startswith("streams one core carries") for line in lines)
    assert sum("cores busy: server" in line for line in lines) == 1, out


@pytest.mark.parametrize("mode", [[], ["--distributed"]], ids=["embedded", "distributed"])
def test_telephony_benchmark_prints_both_servers_and_writes_json(
    mode: list[str], kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, tmp_path: Path
) -> None:
    results = tmp_path / "telephony.json"
    args = ["--calls", "2", "--seconds", "1", "--warmup", "0", "--delay-ms", "100", "--json", str(results)]
    out = _run("telephony.py", [*args, *mode], kafka_endpoint, redis_endpoint)
    voxbus = "voxbus over Kafka+Redis" if mode else "voxbus up (embedded)"
    rows = [line for line in out.splitlines() if line.startswith(("bare aiohttp pacer", voxbus))]
    assert len(rows) == 2, out
    for row in rows:
        calls, sent, received, lost, wrong_size, other = row.split()[-13:-7]
        assert calls == "2" and int(sent) > 0 and received == sent, row
        assert (lost, wrong_size, other) == ("0", "0", "0"), row
    assert any(line.startswith("2 calls, voxbus over the baseline: jitter p50") for line in out.splitlines())
    echoed = next(row for row in rows if row.startswith(voxbus)).split()[-11]
    pacers = next(line for line in out.splitlines() if line.startswith("2 calls, voxbus's pacers"))
    assert f": {echoed} frames," in pacers, pacers  # ingest paced every frame the callers got
    assert sum("cores busy: server" in line for line in out.splitlines()) == 2, out
    runs = json.loads(results.read_text())["runs"]
    assert [run["server"] for run in runs] == ["bare aiohttp pacer (baseline)", voxbus]
