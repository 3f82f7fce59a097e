"""What the benchmarks share: real Kafka and Redis, voxbus services as processes, the load
generator, server CPU from /proc and the common command-line options."""

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.records import BusMessage
from voxbus.devinfra import provide_kafka, provide_redis

LOADGEN = Path(__file__).with_name("loadgen")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def wait_ready(url: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url) as response:
                    if response.status in (200, 404):
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument(
        "--client",
        choices=["node", "python"],
        default="node" if (LOADGEN / "node_modules").is_dir() else "python",
        help="load generator: node (bench/loadgen, after `npm ci` there) or python (aiohttp)",
    )


@contextlib.contextmanager
def voxbus_env(prefix: str, streams: int) -> Iterator[dict[str, str]]:
    """The environment of voxbus services over real Kafka and Redis (local processes from
    voxbus.devinfra, or KAFKA_BOOTSTRAP_SERVERS / REDIS_URL), with a scratch storage folder."""
    with provide_kafka() as kafka, provide_redis() as redis, tempfile.TemporaryDirectory() as folder:
        yield {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
            "REDIS_URL": redis.url,
            "TOPIC_PREFIX": prefix,
            "AUDIO_STORAGE_PATH": folder,
            "LOG_LEVEL": "WARNING",
            "MAX_CONCURRENT_SESSIONS": str(10 * streams),
        }


def serve(service: str, port: int, env: dict[str, str]) -> "subprocess.Popen[bytes]":
    """`voxbus serve SERVICE` on 127.0.0.1:port."""
    command = ["-m", "voxbus.cli", "serve", service, "--port", str(port), "--host", "127.0.0.1"]
    return subprocess.Popen([sys.executable, *command], env=env)


async def kafka_hop_ms(bootstrap_servers: str, topic: str, count: int = 250) -> list[float]:
    """The floor under anything that crosses the bus: one record every 20 ms produced (voxbus's
    producer settings) and read back by a partition tail, with nothing else running; ms, sorted."""
    bus = KafkaBus(bootstrap_servers, client_id="bench-hop")
    await bus.start()
    try:
        await bus.create_topics({topic: 1})
        tail = bus.partition_tail(topic, 0)
        async with tail:
            hops: list[float] = []

            async def read() -> None:
                while len(hops) < count:
                    for record in await tail.getmany(timeout_ms=1000):
                        hops.append(1000 * (time.time() - float(record.value)))

            reader = asyncio.create_task(read())
            for _ in range(count):
                await bus.send(topic, BusMessage(key=b"hop", value=str(time.time()).encode(), headers=()))
                await asyncio.sleep(0.02)
            async with asyncio.timeout(30):
                await reader
    finally:
        await bus.close()
    return sorted(hops)
