"""`voxbus` as a user runs it: a real process, real HTTP, SIGTERM to stop."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import free_port
from voxbus.common.bus.kafka import KafkaBus
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

VOXBUS = [sys.executable, "-m", "voxbus.cli"]


@contextmanager
def running(args: list[str], env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [*VOXBUS, *args],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


async def wait_healthy(
    base: str, process: subprocess.Popen[str], timeout: float = 30.0, *, path: str = "/health"
) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"voxbus exited with {process.returncode}: {process.stderr.read()}")
            try:
                async with http.get(f"{base}{path}") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)  # another process: its HTTP answers are all there is to wait on
    raise AssertionError(f"{base}{path} did not answer 200 within {timeout} s")


def stop(process: subprocess.Popen[str]) -> tuple[int, list[dict[str, object]]]:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return process.returncode, [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


async def test_up_serves_admin_routes_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {"PORT": str(port), "HOST": "127.0.0.1", "WYOMING_PORT": str(free_port())}
    with running(["up"], env, tmp_path) as process:
        await wait_healthy(base, process)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/") as response:
                info = await response.json()
            async with http.get(f"{base}/ready") as response:
                assert response.status == 200
                ready = await response.json()
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
        assert info["services"] == ["ingest", "transcoder", "writer", "echo", "telephony"]
        assert ready["status"] == "ready"
        assert set(ready["checks"].values()) == {"ok"}
        assert {"bus", "store", "egress-lease", "transcoder-consumer", "writer-consumer"} <= set(
            ready["checks"]
        )
        assert "voxbus_build_info" in metrics
        returncode, logs = stop(process)
    assert returncode == 0
    messages = [line["msg"] for line in logs]
    assert "listening" in messages
    assert "wyoming tcp listening" in messages
    assert messages[-1] == "stopped"
    assert next(line for line in logs if line["msg"] == "backends ready")["bus"] == "InProcessBus"


async def test_serve_one_service_over_real_kafka_and_redis(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, unique: str
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_endpoint.bootstrap_servers,
        "REDIS_URL": redis_endpoint.url,
        "TOPIC_PREFIX": f"cli-{unique}.",
        "AUDIO_PARTITIONS": "3",
        "EGRESS_PARTITIONS": "4",
    }
    with running(["serve", "writer"], env, tmp_path) as process:
        await wait_healthy(base, process, timeout=60)
        # ready means consuming: it follows the group join, which takes a moment over Kafka
        await wait_healthy(base, process, timeout=60, path="/ready")
        async with aiohttp.ClientSession() as http, http.get(f"{base}/ready") as response:
            assert response.status == 200
            assert (await response.json())["checks"] == {"bus": "ok", "store": "ok", "writer-consumer": "ok"}
        async with KafkaBus(kafka_endpoint.bootstrap_servers) as bus:
            assert await bus.partition_count(f"cli-{unique}.audio.raw") == 3
            assert await bus.partition_count(f"cli-{unique}.egress") == 4
        returncode, logs = stop(process)
    assert returncode == 0
    backends = next(line for line in logs if line["msg"] == "backends ready")
    assert (backends["bus"], backends["store"]) == ("KafkaBus", "RedisStore")


def test_invalid_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    result = subprocess.run(
        [*VOXBUS, "up"],
        check=False,
        env={**os.environ, "MAX_MESSAGE_SIZE_BYTES": "tiny", "WYOMING_PORT": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "MAX_MESSAGE_SIZE_BYTES" in result.stderr


@pytest.mark.parametrize("variable", ["PORT", "WYOMING_PORT"])
def test_a_port_in_use_exits_2_naming_the_address_and_the_setting(tmp_path: Path, variable: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"PORT": str(free_port()), "WYOMING_PORT": str(free_port()), variable: str(port)}
        result = subprocess.run(
            [*VOXBUS, "up"],
            check=False,
            env={**os.environ, "HOST": "127.0.0.1", **ports},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    error = next(json.loads(line) for line in result.stderr.splitlines() if '"ERROR"' in line)
    assert f"127.0.0.1:{port}" in error["msg"]
    assert variable in error["msg"]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "setting", "says"),
    [
        (None, "TELEPHONY_GREETING_WAV", "no such file"),
        (b"not a sound", "TELEPHONY_GREETING_WAV", "is not a sound file"),
        (b"", "HOST_NAME", "must be the public base URL"),
    ],
)
def test_a_bad_greeting_or_host_name_exits_2_naming_the_setting(
    tmp_path: Path, content: bytes | None, setting: str, says: str
) -> None:
    greeting = tmp_path / "greeting.wav"
    if content is not None:
        greeting.write_bytes(content)
    env = (
        {"TELEPHONY_GREETING_WAV": str(greeting)}
        if setting != "HOST_NAME"
        else {"HOST_NAME": "voice.example.com"}
    )
    result = subprocess.run(
        [*VOXBUS, "serve", "telephony"],
        check=False,
        env={**os.environ, "HOST": "127.0.0.1", "PORT": str(free_port()), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert setting in result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_kafka_fails_fast_with_the_address(tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    result = subprocess.run(
        [*VOXBUS, "up", "--port", str(free_port())],
        check=False,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}", "WYOMING_PORT": "0"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode != 0
    assert f"127.0.0.1:{port}" in result.stderr


@pytest.mark.parametrize("argv", [["--help"], ["up", "--help"], ["serve", "--help"]])
def test_help_explains_up_and_serve(argv: list[str]) -> None:
    result = subprocess.run([*VOXBUS, *argv], check=False, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert "voxbus" in result.stdout
    if argv == ["--help"]:
        assert "voxbus up" in result.stdout
        assert "voxbus serve SERVICE" in result.stdout
    if argv[0] == "serve":
        assert "ingest" in result.stdout
