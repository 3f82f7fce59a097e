"""`voxbus stack` as a developer runs it: `up` starts Kafka, Redis, two ingest and two telephony
instances behind HAProxy, the other services and Prometheus, each a process that outlives the
command; through the load balancer a recording survives its ingest instance's SIGTERM (the
client is closed with 1012 and resumes on the other instance, no gap and no duplicate), webhooks
alternate between the telephony instances and the call record stays whole; Prometheus scrapes
every process with the cluster's rules, and under load every query of every Grafana dashboard
returns data (the dashboards are drawn from those results: the README's pictures); `down` stops
all of it and nothing else."""

import asyncio
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from tests.audio import speech, wav_bytes
from tests.cluster_load import VONAGE_STATUSES, exotel_call, refused_connection, twilio_status
from tests.dashboard_pictures import Panels, Window, draw, fetch, peaks
from tests.helpers import eventually
from voxbus.devinfra.dashboards import DASHBOARDS
from voxbus.devinfra.ports import free_ports

SECONDS = 10.0
# panels that stay at 0 while nothing goes wrong (no lag to speak of, no errors, no drops)
AT_ZERO_WHEN_HEALTHY = {
    "Consumer lag by group and partition",
    "Largest lag per consumer group",
    "Produce errors",
    "Skipped, replayed and bad records",
    "Frames not sent to callers",
}
CALL_SECONDS = 4.0
RULES = Path(__file__).parents[2] / "deploy" / "prometheus" / "rules.yml"
SERVICES = {
    "kafka-redis",
    "ingest-1",
    "ingest-2",
    "telephony-1",
    "telephony-2",
    "transcoder",
    "writer",
    "echo",
}


async def voxbus(*args: str, timeout: float = 240) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voxbus.cli",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={k: v for k, v in os.environ.items() if not k.startswith("VOXBUS_")},
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, out.decode()


def members(directory: Path) -> dict[str, int]:
    state = json.loads((directory / "stack.json").read_text())
    return {member["name"]: member["pid"] for member in state["members"]}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() != b""
    except OSError:
        return False


def service_ports(directory: Path, service: str) -> dict[str, int]:
    config = (directory / "haproxy.cfg").read_text()
    return {name: int(port) for name, port in re.findall(rf"server ({service}-\d) [\d.]+:(\d+)", config)}


async def metric(http: aiohttp.ClientSession, port: int, line_start: str) -> float:
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        text = await response.text()
    values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start)]
    return sum(values)


def test_the_cluster_rules_pass_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("no promtool: apt-get install -y prometheus (make test installs it)")
    result = subprocess.run(
        [promtool, "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 12 rules found" in result.stdout


async def test_a_local_cluster_behind_haproxy_survives_an_ingest_restart_and_spreads_webhooks(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "stack"
    port, prometheus_port = free_ports(2)
    base = f"http://127.0.0.1:{port}"
    source = speech(SECONDS, 16000)
    (tmp_path / "speech.wav").write_bytes(wav_bytes(source, 16000))
    code, out = await voxbus(
        "stack", "up", "--dir", str(directory), "--port", str(port), "--prometheus-port", str(prometheus_port)
    )
    started = members(directory) if (directory / "stack.json").exists() else {}
    load_started = time.time()
    holding: list[str] = []  # the ingest instance the stream went to
    try:
        assert code == 0, out
        assert f"{base}/test" in out
        code, out = await voxbus("stack", "status", "--dir", str(directory))
        assert code == 0, out
        assert {line.split()[0] for line in out.splitlines()} == SERVICES | {"haproxy", "prometheus"}
        assert all(line.split()[2] == "ready" for line in out.splitlines()), out

        async with aiohttp.ClientSession() as http:
            # webhooks alternate between the telephony instances; the call record is whole
            telephony = service_ports(directory, "telephony")
            counter = 'voxbus_telephony_webhooks_total{outcome="ok",provider="vonage",webhook="event"}'
            before = {name: await metric(http, p, counter) for name, p in telephony.items()}
            for n, status in enumerate(VONAGE_STATUSES, 1):
                event = {"uuid": "CALL-STACK", "status": status, "timestamp": f"2026-12-02T10:00:0{n}Z"}
                async with http.post(f"{base}/vonage/event", json=event) as response:
                    assert response.status == 204
            after = {name: await metric(http, p, counter) for name, p in telephony.items()}
            assert {name: after[name] - before[name] for name in telephony} == {
                "telephony-1": 2,
                "telephony-2": 2,
            }
            async with http.get(f"{base}/api/calls/CALL-STACK") as response:
                call = await response.json()
            assert [entry["status"] for entry in call["statuses"]] == list(VONAGE_STATUSES)
            assert call["status"] == "completed"

            # a recording through the load balancer; the ingest instance holding it is stopped
            streaming = asyncio.create_task(
                voxbus(
                    "stream",
                    str(tmp_path / "speech.wav"),
                    "--url",
                    f"{base.replace('http', 'ws')}/api/ws/audio",
                )
            )
            ingests = service_ports(directory, "ingest")
            gauge = 'voxbus_ingest_connections{protocol="session"}'
            chunks = 'voxbus_ingest_chunks_total{protocol="session"}'

            async def one_holds_it() -> bool:
                holding[:] = [name for name, p in ingests.items() if await metric(http, p, gauge) == 1]
                return len(holding) == 1

            async def streamed_a_while() -> bool:  # 3 s of its 100 ms chunks
                return await metric(http, ingests[holding[0]], chunks) >= 30

            await eventually(one_holds_it, what="an ingest instance holding the stream", timeout=30)
            await eventually(streamed_a_while, what="a few seconds streamed", timeout=30)
            os.kill(started[holding[0]], signal.SIGTERM)
            code, out = await streaming
            assert code == 0, out
            result = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
            assert int(result["resumed"]) >= 1, out
            assert result["status"] == "completed"
            async with http.get(f"{base}/api/audio/sessions/{result['session_id']}/audio") as response:
                assert response.status == 200
                recorded, rate = soundfile.read(
                    io.BytesIO(await response.read()), dtype="int16", always_2d=True
                )
            assert rate == 16000
            np.testing.assert_array_equal(recorded, source)  # no gap, no duplicate

            async def all_scraped() -> bool:
                url = f"http://127.0.0.1:{prometheus_port}/api/v1/targets"
                async with http.get(url) as response:
                    targets = (await response.json())["data"]["activeTargets"]
                up = [t["labels"]["job"] for t in targets if t["health"] == "up"]
                return sorted(up) == ["echo", "ingest", "telephony", "telephony", "transcoder", "writer"]

            # the stopped ingest is down; every other voxbus process is scraped
            await eventually(all_scraped, what="Prometheus scraping every running voxbus process", timeout=30)
            # more of what clients do, on the instance left: a carrier call recorded and echoed, with
            # a message voxbus rejects; statuses from the other carriers; a connection refused
            await _more_clients(http, base)
            await eventually(
                lambda: _every_rule_evaluated(http, prometheus_port),
                what="every rule of deploy/prometheus/rules.yml loaded and healthy, each recorded series "
                "with data",
                timeout=60,
            )
            # over the load's time range, every dashboard query returns numbers, and every panel
            # shows the load (but those where a healthy cluster stays at 0), once Prometheus
            # scraped its end; each dashboard is then drawn from those results
            prometheus = f"http://127.0.0.1:{prometheus_port}"
            queries = {q.expr for d in DASHBOARDS for p in d.panels for q in p.queries}
            fetched: dict[str, Panels] = {}
            missing: dict[str, object] = {}
            window = Window(load_started, time.time())

            async def every_query_answers_and_every_panel_shows_the_load() -> bool:
                nonlocal window
                window = Window(load_started, time.time())
                for dashboard in DASHBOARDS:
                    fetched[dashboard.uid] = await fetch(http, prometheus, dashboard, window)
                drawn = [(panel, series) for panels in fetched.values() for panel, series in panels]
                answered = {one.expr for _, series in drawn for one in series}
                quiet = {
                    t: peak for panels in fetched.values() for t, peak in peaks(panels).items() if not peak
                }
                missing.clear()
                missing.update({"queries without data": sorted(queries - answered), "panels at 0": quiet})
                return answered == queries and set(quiet) <= AT_ZERO_WHEN_HEALTHY

            try:  # polled as often as Prometheus evaluates (5 s): 47 range queries a round
                await eventually(
                    every_query_answers_and_every_panel_shows_the_load,
                    what="every dashboard query with data, and the load on every panel",
                    timeout=60,
                    interval=5,
                )
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {missing}") from None
            pictures = Path(os.environ.get("VOXBUS_DASHBOARD_PICTURES") or tmp_path)
            await asyncio.to_thread(pictures.mkdir, parents=True, exist_ok=True)
            for dashboard in DASHBOARDS:
                picture = pictures / f"dashboard-{dashboard.file_name.removesuffix('.json')}.png"
                await draw(dashboard, fetched[dashboard.uid], window, picture, load="the stack test's load")
    finally:
        code, out = await voxbus("stack", "down", "--dir", str(directory))
    assert code == 0, out
    assert set(out.removeprefix("stopped: ").strip().split(", ")) == (
        SERVICES | {"haproxy", "prometheus"}
    ) - set(holding)
    assert not [name for name, pid in started.items() if alive(pid)]


async def _every_rule_evaluated(http: aiohttp.ClientSession, prometheus_port: int) -> bool:
    """The cluster's rules are loaded and evaluate without error; every recorded series has data
    (the alerts need not fire)."""
    api = f"http://127.0.0.1:{prometheus_port}/api/v1"
    async with http.get(f"{api}/rules") as response:
        groups = (await response.json())["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    if {group["name"] for group in groups} != {"voxbus-recorded", "voxbus-alerts"}:
        return False
    if any(rule["health"] != "ok" for rule in rules):
        return False
    for rule in rules:
        if rule["type"] == "recording":
            async with http.get(f"{api}/query", params={"query": rule["name"]}) as response:
                if not (await response.json())["data"]["result"]:
                    return False
    return True


async def _more_clients(http: aiohttp.ClientSession, base: str) -> None:
    echoed = await exotel_call(http, base, "EXC-STACK", CALL_SECONDS)
    assert len(echoed) == CALL_SECONDS * 8000 * 2
    await twilio_status(http, base, "CA-STACK")
    await refused_connection(http, base)
