"""voxbus servers for tests: embedded (one app, in-process backends, real HTTP on loopback)
and distributed (`voxbus serve …` processes over real Kafka and Redis)."""

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import redis
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.helpers import free_port
from voxbus.cli.main import load_service
from voxbus.common.constants import SERVICE_NAMES
from voxbus.common.runtime import create_app
from voxbus.common.settings import Settings
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint


@contextlib.asynccontextmanager
async def embedded_app(tmp_path: Path, **overrides: Any) -> AsyncIterator[tuple[str, web.Application]]:
    """`voxbus up` in this process on a free loopback port: (base URL, app)."""
    settings = Settings(
        **{
            "audio_storage_path": tmp_path / "audio",
            "audio_partitions": 2,
            "egress_partitions": 4,
            "events_partitions": 2,
            "wyoming_port": 0,  # tests that speak Wyoming over TCP give a free port
            **overrides,
        }
    )
    app = create_app(settings, [load_service(name) for name in SERVICE_NAMES])
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        yield f"http://127.0.0.1:{server.port}", app
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def embedded(tmp_path: Path, **overrides: Any) -> AsyncIterator[str]:
    """`voxbus up` in this process: its base URL."""
    async with embedded_app(tmp_path, **overrides) as (base, _):
        yield base


@contextlib.asynccontextmanager
async def up_process(tmp_path: Path, **env: str) -> AsyncIterator["Process"]:
    """`voxbus up` in a process of its own (in-process backends, storage in tmp_path), as a user
    runs it, ready; stopped on the way out. Timing tests use it: the client's event loop is not
    the server's."""
    server = Process(
        "up",
        {"AUDIO_STORAGE_PATH": str(tmp_path / "audio"), "WYOMING_PORT": "0", "HOST": "127.0.0.1", **env},
        tmp_path,
    )
    server.start()
    try:
        await server.ready()
        yield server
    finally:
        server.stop()


class Process:
    """One `voxbus serve NAME` process (NAME "up": `voxbus up`, every service in one process)
    that can be stopped, killed and started again."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        *,
        port: int | None = None,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """`preexec_fn`: run in the child before it starts (a resource limit of its own)."""
        self.name, self.env, self.log_dir = name, env, log_dir
        self.port = port or free_port()
        self._preexec_fn = preexec_fn
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.starts += 1
        command = ["up"] if self.name == "up" else ["serve", self.name]
        with (self.log_dir / f"{self.name}-{self.port}-{self.starts}.log").open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "voxbus.cli", *command, "--port", str(self.port)],
                env={**os.environ, "POD_NAME": f"{self.name}-{self.port}", **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=self._preexec_fn,  # noqa: PLW1509 - a limit set in the child, before exec
            )

    async def ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                if self.process is not None and self.process.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.process.returncode}: {self.log()}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/ready") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.2)  # another process: its HTTP answers are all there is to wait on
        raise AssertionError(f"{self.name} not ready within {timeout} s: {self.log()}")

    def log(self) -> str:
        logs = sorted(self.log_dir.glob(f"{self.name}-{self.port}-*.log"))
        return logs[-1].read_text()[-3000:] if logs else ""

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)
            self.process.wait(timeout=30)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)

    def stop(self) -> None:
        try:
            self.signal(signal.SIGTERM)
        except subprocess.TimeoutExpired:
            self.kill()


_next_db = itertools.cycle(range(1, 16))


def fresh_redis_db(url: str) -> str:
    """The same Redis, another (flushed) database: cluster-wide keys of other tests stay apart."""
    base = url.rsplit("/", 1)[0] if url.count("/") > 2 else url
    isolated = f"{base}/{next(_next_db)}"
    client = redis.Redis.from_url(isolated)
    try:
        client.flushdb()
    finally:
        client.close()
    return isolated


def topic_prefix(name: str) -> str:
    """Topics of one test's own on a shared broker: `{name}-{8 random hex digits}.`."""
    return f"{name}-{uuid.uuid4().hex[:8]}."


def isolated_env(
    tmp_path: Path, kafka: KafkaEndpoint, redis_endpoint: RedisEndpoint, prefix: str, **extra: str
) -> dict[str, str]:
    """`distributed_env` for one test: its topics, a flushed Redis database, storage in tmp_path."""
    return distributed_env(
        kafka.bootstrap_servers, fresh_redis_db(redis_endpoint.url), tmp_path / "audio", prefix, **extra
    )


def distributed_env(kafka: str, redis_url: str, storage: Path, prefix: str, **extra: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "REDIS_URL": redis_url,
        "TOPIC_PREFIX": prefix,
        "AUDIO_PARTITIONS": "2",
        "EGRESS_PARTITIONS": "4",
        "EVENTS_PARTITIONS": "2",
        "AUDIO_STORAGE_PATH": str(storage),
        "HOST": "127.0.0.1",
        "WYOMING_PORT": "0",  # processes on one host would share 10700; tests that use it give one
        **extra,
    }


@contextlib.asynccontextmanager
async def cluster(
    env: dict[str, str],
    log_dir: Path,
    *,
    ingests: int = 1,
    services: tuple[str, ...] = ("transcoder", "writer"),
) -> AsyncIterator[list[Process]]:
    """Ingest pods (first in the list) plus one process per other service, all ready."""
    processes = [Process("ingest", env, log_dir) for _ in range(ingests)]
    processes += [Process(name, env, log_dir) for name in services]
    for process in processes:
        process.start()
    try:
        for process in processes:
            await process.ready()
        yield processes
    finally:
        for process in processes:
            process.stop()
