"""Consumers that crash, restart and join their group: recordings still complete, and `/health`,
`/ready` and `/metrics` say what the consumers are doing.

Embedded (`voxbus up` in this process, or in a subprocess with a low open-file limit) and
distributed (a writer process restarted over real Kafka and Redis).
"""

import asyncio
import errno
import json
import os
import re
import resource
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Self

import aiohttp
import pytest

from tests.clients import CLOSE, record_with_aiohttp
from tests.helpers import eventually, free_port
from tests.servers import cluster, embedded, embedded_app, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint
from voxbus.writer import worker
from voxbus.writer.recording import SessionRecording

PCM_URL = "/api/ws/audio?format=pcm&sample_rate=16000&channels=1"
CHUNK = b"\x01\x00\x02\x00" * 800  # 100 ms of 16 kHz mono
FAST_RESTARTS = {"worker_restart_backoff_seconds": 0.05, "close_timeout_seconds": 10.0}


def _frames(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes())


def _closed_ok(result: dict[str, Any]) -> dict[str, Any]:
    closed = result["closed"]
    assert closed is not None
    assert closed["message"] == "Session closed successfully", closed
    assert closed["status"] == "completed", closed
    return closed


async def _metrics(http: aiohttp.ClientSession, base: str) -> str:
    async with http.get(f"{base}/metrics") as response:
        return await response.text()


def _gauge(text: str, name: str) -> dict[str, float]:
    """`{labels: value}` of every sample of a metric."""
    return {
        match[1]: float(match[2])
        for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE)
    }


class _FailingOnce(SessionRecording):
    """The first session file the writer opens fails as it did when the process ran out of handles."""

    failures = 0
    limit = 1

    @classmethod
    def create(cls, *args: Any, **kwargs: Any) -> Self:
        if _FailingOnce.failures < _FailingOnce.limit:
            _FailingOnce.failures += 1
            raise OSError(errno.EMFILE, "Too many open files")
        return super().create(*args, **kwargs)


@pytest.fixture
def failing_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_FailingOnce]]:
    _FailingOnce.failures, _FailingOnce.limit = 0, 1
    monkeypatch.setattr(worker, "SessionRecording", _FailingOnce)
    yield _FailingOnce


async def test_a_crashed_writer_restarts_and_the_acked_audio_is_recorded(
    tmp_path: Path, failing_writer: type[_FailingOnce], caplog: pytest.LogCaptureFixture
) -> None:
    """Embedded: the in-process bus keeps what the writer had not committed, so the restarted
    writer writes the acked audio; the crash is logged once, with its reason."""
    async with embedded(tmp_path, **FAST_RESTARTS) as base, aiohttp.ClientSession() as http:
        result = await record_with_aiohttp(base + PCM_URL, [CHUNK] * 10)
        closed = _closed_ok(result)
        assert failing_writer.failures == 1
        assert _frames(tmp_path / "audio" / closed["file_path"]) == CHUNK * 10
        async with http.get(f"{base}/health") as health:
            assert health.status == 200
        async with http.get(f"{base}/ready") as ready:
            assert ready.status == 200, await ready.text()
    crashes = [
        r for r in caplog.records if "crashed" in r.getMessage() and "writer-consumer" in r.getMessage()
    ]
    assert len(crashes) == 1
    assert "Too many open files" in getattr(crashes[0], "reason", "")


async def test_health_fails_once_the_writer_crashed_for_good(
    tmp_path: Path, failing_writer: type[_FailingOnce]
) -> None:
    failing_writer.limit = 10**6
    async with (
        embedded(tmp_path, **{**FAST_RESTARTS, "close_timeout_seconds": 2.0}, worker_max_failures=3) as base,
        aiohttp.ClientSession() as http,
    ):
        result = await record_with_aiohttp(base + PCM_URL, [CHUNK])
        assert result["closed"]["message"] == "Session close timed out"
        deadline = time.monotonic() + 30
        while True:
            async with http.get(f"{base}/health") as health:
                body = await health.json()
                if health.status == 503:
                    break
            assert time.monotonic() < deadline, f"/health still says {body} with the writer down"
            await asyncio.sleep(0.1)  # /health turns after the restarts; nothing announces it
        assert body["status"] == "unhealthy"
        assert "Too many open files" in body["failed"]["writer-consumer"], body
        assert "in a row without progress" in body["failed"]["writer-consumer"], body


async def test_consumer_lag_and_event_loop_lag_are_on_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the writer is held up, the audio produced for it shows as lag; once it caught up, 0."""
    release = asyncio.Event()
    original = worker.WriteHandler.handle

    async def held(self: worker.WriteHandler, records: list[Any]) -> Any:
        await release.wait()
        return await original(self, records)

    monkeypatch.setattr(worker.WriteHandler, "handle", held)
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        async with http.ws_connect(base + PCM_URL) as ws:
            await ws.receive_json()
            for _ in range(5):
                await ws.send_bytes(CHUNK)
                await ws.receive_json()
            deadline = time.monotonic() + 10
            # the five chunks' PCM (the transcoder joins chunks that come in one batch into one record)
            while not sum(_gauge(await _metrics(http, base), "voxbus_writer_consumer_lag_records").values()):
                assert time.monotonic() < deadline, await _metrics(http, base)
                await asyncio.sleep(0.05)  # the lag is read at scrape time: scrape again
            text = await _metrics(http, base)
            lag = _gauge(text, "voxbus_writer_consumer_lag_records")
            assert all(
                re.fullmatch(r'group="voxbus\.writer",partition="\d+",topic="voxbus\.audio\.pcm"', labels)
                for labels in lag
            ), lag
            release.set()
            await ws.send_str(CLOSE)
            assert (await ws.receive_json(timeout=10))["message"] == "Session closed successfully"
        text = await _metrics(http, base)
        assert set(_gauge(text, "voxbus_writer_consumer_lag_records").values()) == {0.0}
        assert set(_gauge(text, "voxbus_transcoder_consumer_lag_records").values()) == {0.0}
        assert "voxbus_echo_consumer_lag_records" in text

        async def loop_lag_observed() -> bool:  # its first sample comes 0.25 s after the start
            text = await _metrics(http, base)
            observed = re.search(r"^voxbus_runtime_event_loop_lag_seconds_count (\S+)$", text, re.MULTILINE)
            return observed is not None and float(observed[1]) > 0

        await eventually(loop_lag_observed, what="the event loop's lag on /metrics")


# -- out of file handles: `voxbus up` in a subprocess with RLIMIT_NOFILE = 256 ----------------------


def _limit_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


async def _connect_and_drop(http: aiohttp.ClientSession, base: str) -> None:
    async with http.ws_connect(base + PCM_URL) as ws:
        await ws.receive_json()
        await ws.send_bytes(CHUNK)
        await ws.receive_json()
    # dropped without close_session: the session stays resumable until the idle reaper


def _start_up(port: int, env: dict[str, str], log_path: Path) -> "subprocess.Popen[bytes]":
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "voxbus.cli", "up", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_open_files,  # noqa: PLW1509 - only setrlimit, before exec
        )


async def test_many_dropped_sessions_do_not_exhaust_the_writers_file_handles(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "WYOMING_PORT": "0",
        "AUDIO_STORAGE_PATH": str(tmp_path / "audio"),
        "AUDIO_PARTITIONS": "2",
        "CLOSE_TIMEOUT_SECONDS": "10",
        "MAX_CONCURRENT_SESSIONS": "10000",
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "API_KEY"):
        env.pop(name, None)
    log_path = tmp_path / "up.log"
    process = _start_up(port, env, log_path)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as http:
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, log_path.read_text()[-3000:]
                try:
                    async with http.get(f"{base}/ready") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                await asyncio.sleep(0.1)  # another process: its HTTP answers are all there is to wait on
            for start in range(0, 300, 20):
                await asyncio.gather(*(_connect_and_drop(http, base) for _ in range(start, start + 20)))
            result = await record_with_aiohttp(base + PCM_URL, [CHUNK] * 5)
            assert result["closed"] is not None, log_path.read_text()[-3000:]
            assert result["closed"]["message"] == "Session closed successfully", (
                result["closed"],
                log_path.read_text()[-3000:],
            )
            assert _frames(tmp_path / "audio" / result["closed"]["file_path"]) == CHUNK * 5
            async with http.get(f"{base}/health") as health:
                assert health.status == 200, await health.text()
    finally:
        process.terminate()
        process.wait(timeout=30)
    errors = [json.loads(line) for line in log_path.read_text().splitlines() if '"ERROR"' in line]
    assert not [e for e in errors if "Too many open files" in json.dumps(e)], errors[:3]


# -- distributed: a restarted writer is ready once it consumes ---------------------------------------


async def _poll_ready(http: aiohttp.ClientSession, url: str) -> list[tuple[float, int, dict[str, Any]]]:
    """Poll `/ready` until 200: every answer, with when it came (connection refused is no answer)."""
    started = time.monotonic()
    answers: list[tuple[float, int, dict[str, Any]]] = []
    while not answers or answers[-1][1] != 200:
        assert time.monotonic() - started < 60, answers[-3:]
        try:
            async with http.get(f"{url}/ready") as response:
                answers.append((time.monotonic() - started, response.status, await response.json()))
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.02)  # the answers over time are what the test looks at
    return answers


async def test_a_restarted_writer_is_ready_only_once_it_consumes(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("rdy"),
        CLOSE_TIMEOUT_SECONDS="30",
    )
    async with cluster(env, tmp_path) as (ingest, _, writer), aiohttp.ClientSession() as http:
        # A rolling restart (SIGTERM, the member leaves its group): a close asked for while the
        # writer is down waits for the new one.
        async with http.ws_connect(ingest.url + PCM_URL) as ws:
            await ws.receive_json()
            for _ in range(10):
                await ws.send_bytes(CHUNK)
                await ws.receive_json()
            writer.stop()
            writer.start()
            closing = time.monotonic()
            ready = asyncio.create_task(_poll_ready(http, writer.url))
            await ws.send_str(CLOSE)
            closed = await ws.receive_json(timeout=40)
            close_wait = time.monotonic() - closing
            to_ready = (await ready)[-1][0]
        assert closed["message"] == "Session closed successfully", closed
        assert _frames(tmp_path / "audio" / closed["file_path"]) == CHUNK * 10

        # A crash (SIGKILL): the dead member stays in the group until its session times out, and
        # the new writer has no partitions until then. /ready says so, and 200 means consuming.
        writer.kill()
        writer.start()
        answers = await _poll_ready(http, writer.url)
        not_ready = [body for _, status, body in answers if status == 503]
        assert not_ready, f"the writer was ready at its first answer: {answers[0]}"
        assert "not consuming" in not_ready[-1]["checks"]["writer-consumer"], not_ready[-1]
        # both partitions of the PCM topic are assigned to it (lag is known after a first fetch)
        lag: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while len(lag) != 2:
            assert time.monotonic() < deadline, lag
            lag = _gauge(await _metrics(http, writer.url), "voxbus_writer_consumer_lag_records")
            await asyncio.sleep(0.05)  # another process, read at scrape time: scrape again
        assert set(lag.values()) == {0.0}, lag

        started = time.monotonic()
        result = await record_with_aiohttp(f"{ingest.url}{PCM_URL}", [CHUNK] * 10)
        prompt = time.monotonic() - started
        closed = _closed_ok(result)
        assert _frames(tmp_path / "audio" / closed["file_path"]) == CHUNK * 10
        assert prompt < 3.0, f"a 1 s session took {prompt:.1f} s to close after /ready"
        print(  # noqa: T201 - the figures the README quotes
            f"\nwriter SIGTERM restart: ready after {to_ready:.2f} s,"
            f" a pending close waited {close_wait:.2f} s;"
            f" SIGKILL restart: ready after {answers[-1][0]:.2f} s; then a 1 s session took {prompt:.2f} s"
        )
