"""What an operator reads on `/metrics`: every series named `voxbus_<service>_<what>_<unit>` and
listed in docs/metrics.md; sessions counted by protocol and start, calls by carrier and status,
the time from a chunk's arrival to its audio being on disk; bounded label sets shown at 0 before
anything happened (a dashboard then draws a flat line, not "no data")."""

import re
from pathlib import Path

import aiohttp
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import CLOSE
from tests.servers import embedded_app, up_process

PCM_URL = "/api/ws/audio?format=pcm&sample_rate=16000&channels=1"
CHUNK = b"\x01\x00\x02\x00" * 800  # 100 ms of 16 kHz mono
CATALOGUE = Path(__file__).parents[2] / "docs" / "metrics.md"
# what comes after `voxbus_`: the service (or `bus` and `runtime`, shared by every service)
PREFIXES = ("ingest", "transcoder", "writer", "echo", "telephony", "bus", "runtime")
# what a gauge's value counts or measures, last in its name
GAUGE_UNITS = ("records", "frames", "sessions", "connections", "partitions")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def families(http: aiohttp.ClientSession, base: str) -> dict[str, str]:
    """Every voxbus metric family on `/metrics`: name → type."""
    async with http.get(f"{base}/metrics") as response:
        text = await response.text()
    exported = {}
    for family in text_string_to_metric_families(text):
        # (the parser takes prometheus_client's `_created` timestamps for gauges of their own)
        if family.name.startswith("voxbus_") and not family.name.endswith("_created"):
            exported[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return exported


async def test_every_metric_is_named_by_service_and_unit_and_documented(tmp_path: Path) -> None:
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        exported = await families(http, base)
    documented = set(re.findall(r"^\| `(voxbus_\w+)`", CATALOGUE.read_text(), re.MULTILINE))
    assert set(exported) == documented, (set(exported) - documented, documented - set(exported))
    for name, kind in exported.items():
        if name == "voxbus_build_info":  # Prometheus's convention for what a process runs
            continue
        assert name.split("_")[1] in PREFIXES, f"{name}: not voxbus_<service>_…"
        assert kind in ("counter", "gauge", "histogram"), name
        if kind == "histogram":
            assert name.endswith("_seconds"), f"{name}: durations are in seconds"
        elif kind == "gauge":
            assert name.endswith(GAUGE_UNITS), f"{name}: a gauge without its unit"
        else:
            assert name.endswith("_total"), name


async def test_sessions_calls_and_socket_to_file_latency_are_counted(tmp_path: Path) -> None:
    def sessions(start: str) -> float:
        return sample("voxbus_ingest_sessions_total", protocol="session", start=start)

    def calls(carrier: str, status: str) -> float:
        return sample("voxbus_telephony_calls_total", carrier=carrier, status=status)

    before = {
        "new": sessions("new"),
        "resumed": sessions("resumed"),
        "answered": calls("vonage", "answered"),
        "other": calls("vonage", "other"),
        "in-progress": calls("twilio", "in-progress"),
        "written": sample("voxbus_writer_socket_to_file_seconds_count"),
        "waited": sample("voxbus_writer_socket_to_file_seconds_sum"),
    }
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        ws_base = base.replace("http", "ws")
        async with http.ws_connect(ws_base + PCM_URL) as ws:
            session_id = (await ws.receive_json())["session_id"]
            for _ in range(3):
                await ws.send_bytes(CHUNK)
                await ws.receive_json()
        async with http.ws_connect(f"{ws_base}/api/ws/audio/{session_id}") as ws:
            assert (await ws.receive_json())["message"] == "Audio session resumed"
            for _ in range(2):
                await ws.send_bytes(CHUNK)
                await ws.receive_json()
            await ws.send_str(CLOSE)
            assert (await ws.receive_json(timeout=10))["status"] == "completed"

        for status in ("answered", "no-such-status"):
            event = {"uuid": "CALL-M", "status": status, "timestamp": "2026-12-02T10:00:00Z"}
            async with http.post(f"{base}/vonage/event", json=event) as response:
                assert response.status == 204
        form = {"CallSid": "CA-M", "CallStatus": "in-progress"}
        async with http.post(f"{base}/twilio/status", data=form) as response:
            assert response.status == 204

    assert sessions("new") - before["new"] == 1
    assert sessions("resumed") - before["resumed"] == 1
    assert calls("vonage", "answered") - before["answered"] == 1
    assert calls("vonage", "other") - before["other"] == 1  # the label stays bounded
    assert calls("twilio", "in-progress") - before["in-progress"] == 1
    # the five chunks went to disk (the transcoder may join neighbours), each within seconds
    written = sample("voxbus_writer_socket_to_file_seconds_count") - before["written"]
    waited = sample("voxbus_writer_socket_to_file_seconds_sum") - before["waited"]
    assert 1 <= written <= 5
    assert 0 < waited / written < 10


async def test_bounded_label_sets_are_at_zero_before_anything_happened(tmp_path: Path) -> None:
    """`voxbus up` as a user starts it (a process of its own): nothing happened yet, and the
    series a dashboard reads are there, at 0."""
    async with (
        up_process(tmp_path) as server,
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/metrics") as response,
    ):
        text = await response.text()
    for line in (
        'voxbus_ingest_connections{protocol="wyoming-tcp"}',
        'voxbus_ingest_sessions_total{protocol="exotel",start="resumed"}',
        'voxbus_ingest_refused_total{protocol="session",reason="1013"}',
        'voxbus_ingest_rejected_messages_total{protocol="twilio",reason="binary"}',
        'voxbus_ingest_rejected_messages_total{protocol="wyoming",reason="invalid-opus"}',
        'voxbus_telephony_calls_total{carrier="exotel",status="no-answer"}',
        'voxbus_telephony_webhooks_total{outcome="address",provider="exotel",webhook="status"}',
        'voxbus_echo_dropped_frames_total{reason="overflow"}',
        'voxbus_transcoder_skipped_chunks_total{reason="gap"}',
        'voxbus_transcoder_session_errors_total{codec="flac"}',
        'voxbus_writer_sessions_finalized_total{status="error"}',
    ):
        assert re.search(rf"^{re.escape(line)} 0\.0$", text, re.MULTILINE), line
