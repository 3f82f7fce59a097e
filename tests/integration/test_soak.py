"""The soak's 3-minute version (`make soak` runs 30): voxbus as separate services over real Kafka
and Redis at 80 % of the streams this machine carries by docs/benchmarks.json's costs, sessions
opening and closing all along; nothing acked is missing from its recording, memory stays flat,
and the report is written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import planned_streams
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

ROOT = Path(__file__).resolve().parents[2]
VOXBUS_PROCESSES = ("ingest", "transcoder", "writer", "echo")


@pytest.mark.timeout(420)
def test_three_minutes_at_80_percent_lose_nothing_acked_and_keep_memory_flat(
    kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, tmp_path: Path
) -> None:
    if not (ROOT / "bench" / "loadgen" / "node_modules" / "ws").is_dir():
        pytest.fail("the soak's load generator needs its packages: run scripts/bootstrap.sh test (npm ci)")
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_endpoint.bootstrap_servers,
        "REDIS_URL": redis_endpoint.url,
    }
    command = [sys.executable, "-m", "bench.soak", "--minutes", "3", "--session-seconds", "30"]
    done = subprocess.run(
        [*command, "--out", str(tmp_path)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, f"the soak failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    document = json.loads((tmp_path / "soak.json").read_text())
    result = document["result"]
    assert document["streams"] == planned_streams(ROOT / "docs" / "benchmarks.json", 0.8)[0]
    assert result["sessions"] >= 4 * document["streams"]  # each stream opened and closed sessions
    assert result["sessions_checked"] == result["sessions"]
    assert result["frames_checked"] == result["acked"] == result["sent"] > 0
    assert (result["sessions_wrong"], result["sessions_not_completed"], result["failed"]) == ([], [], 0)
    assert result["bad_or_duplicated_or_reordered"] == 0
    for name in VOXBUS_PROCESSES:  # flat: within 20 MiB from the first sample with every stream up
        memory = result["memory"][name]
        assert memory["max_mib"] - memory["first_mib"] < 20, (name, memory)
    assert len(document["windows"]) >= 15 and len(document["samples"]) >= 15
    report = (tmp_path / "soak.md").read_text()
    for heading in ("## Loss", "## Memory", "## Lag and latency"):
        assert heading in report
    for picture in ("soak-memory.png", "soak-latency-lag.png"):
        assert (tmp_path / "images" / picture).stat().st_size > 10_000
