"""What the benchmarks share: real Kafka and Redis, voxbus services as processes, the load
generator, server CPU from /proc and the common command-line options."""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.records import BusMessage
from voxbus.common.settings import Settings
from voxbus.devinfra import provide_kafka, provide_redis
from voxbus.devinfra.ports import free_port

LOADGEN = Path(__file__).with_name("loadgen")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _cpu_seconds_if_running(pid: int) -> float:
    """`cpu_seconds`, or 0 for a process that has exited (another run's broker, stopped meanwhile)."""
    try:
        return cpu_seconds(pid)
    except FileNotFoundError:
        return 0.0


def machine_busy_seconds() -> float:
    """CPU time all cores have spent busy (not idle, not waiting for I/O) since boot."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICKS


def all_broker_pids() -> list[int]:
    """Every Kafka broker running on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if b"kafka.Kafka\0" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
    return pids


def broker_pids(bootstrap_servers: str) -> list[int]:
    """The Kafka brokers on this machine that listen on a port of `bootstrap_servers` (not the
    other brokers tests may be running here); none if Kafka is elsewhere."""
    ports = {int(address.rsplit(":", 1)[1]) for address in bootstrap_servers.split(",") if ":" in address}
    sockets: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) in ports:  # 0A: LISTEN
                    sockets.add(f"socket:[{fields[9]}]")
    pids = []
    for pid in all_broker_pids():
        with contextlib.suppress(OSError):
            if any(os.readlink(fd) in sockets for fd in Path(f"/proc/{pid}/fd").iterdir()):
                pids.append(pid)
    return pids


def local_broker_pids() -> list[int]:
    """The Kafka brokers on this machine the benchmark uses: the one behind $KAFKA_BOOTSTRAP_SERVERS
    if that is set (not the brokers of tests that may run here too), else every one."""
    if bootstrap := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return broker_pids(bootstrap)
    return all_broker_pids()


def _load_generator_seconds() -> float:
    """This process (the Python load generator) and its finished children (the Node.js one)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass(frozen=True, slots=True)
class CpuShare:
    """Where the machine's CPU went during one measured run, in cores (CPU seconds per second)."""

    machine: float
    server: float
    broker: float | None  # None: no broker on this machine
    load_generator: float
    wall_seconds: float = 0.0  # how long the run was

    def as_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        cores = os.cpu_count() or 1
        broker = "" if self.broker is None else f", Kafka broker {self.broker:.2f}"
        accounted = self.server + (self.broker or 0.0) + self.load_generator
        text = (
            f"machine {self.machine:.2f} of {cores} cores busy: server {self.server:.2f}{broker},"
            f" load generator {self.load_generator:.2f}, the rest {max(self.machine - accounted, 0.0):.2f}"
        )
        if self.machine >= 0.9 * cores:
            text += " (saturated: latency here is mostly waiting for a core)"
        return text


class CpuWatch:
    """Measures a `CpuShare` over a `with` block; `server_seconds` is the servers' own CPU."""

    def __init__(self, server_pids: Sequence[int], *, brokers: bool = True) -> None:
        """`brokers`: the servers use the local Kafka broker, whose CPU is theirs (False: embedded
        servers, for which a broker on this machine is someone else's)."""
        self._servers, self._brokers = list(server_pids), local_broker_pids() if brokers else []
        self._start: tuple[float, ...] = ()
        self.server_seconds = 0.0
        self.share: CpuShare | None = None

    def _now(self) -> tuple[float, float, float, float, float]:
        return (
            time.monotonic(),
            machine_busy_seconds(),
            sum(map(cpu_seconds, self._servers)),
            sum(map(_cpu_seconds_if_running, self._brokers)),
            _load_generator_seconds(),
        )

    def __enter__(self) -> "CpuWatch":
        self._start = self._now()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._now()
        wall, machine, server, broker, load = (b - a for a, b in zip(self._start, end, strict=True))
        self.server_seconds = server
        measured_broker = bool(self._brokers) and all(Path(f"/proc/{pid}").exists() for pid in self._brokers)
        self.share = CpuShare(
            machine=machine / wall,
            server=server / wall,
            broker=broker / wall if measured_broker else None,  # a broker that stopped: not measured
            load_generator=load / wall,
            wall_seconds=wall,
        )


def wait_idle(pids: Sequence[int], budget: float = 30.0) -> bool:
    """Until the servers use under 5 % of a core: a run does not pay for the backlog of the one before.

    False if they are still busy after `budget` seconds."""
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        before = sum(map(cpu_seconds, pids))
        time.sleep(1.0)
        if sum(map(cpu_seconds, pids)) - before < 0.05:
            return True
    return False


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
    add_warmup_argument(parser)


def add_warmup_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--warmup",
        type=float,
        default=10.0,
        help="seconds of the same load, not measured, before a server's runs (default 10): a fresh"
        " Kafka broker's JIT compiler takes about twice the CPU for its first ~15 s under load",
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
            "WYOMING_PORT": "0",  # ingest's Wyoming TCP port: off (its default, 10700, is one per machine)
            "MAX_CONCURRENT_SESSIONS": str(10 * streams),
        }


def on_cores(cores: set[int] | None, command: list[str]) -> list[str]:
    """`command`, run on `cores` only (with every thread it starts) if given: util-linux's taskset."""
    if not cores:
        return command
    return ["taskset", "--cpu-list", ",".join(map(str, sorted(cores))), *command]


def stop_processes(*processes: "subprocess.Popen[bytes]") -> None:
    """Terminate them all, then wait for each; one that does not end within 30 s is killed."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def other_cores(core: int | None) -> set[int] | None:
    """Every core but `core` (where a load generator runs while the servers are pinned), or None."""
    if core is None:
        return None
    return (os.sched_getaffinity(0) - {core}) or None


def serve(
    service: str, port: int, env: dict[str, str], cores: set[int] | None = None
) -> "subprocess.Popen[bytes]":
    """`voxbus serve SERVICE` on 127.0.0.1:port (on `cores` only, if given)."""
    command = ["-m", "voxbus.cli", "serve", service, "--port", str(port), "--host", "127.0.0.1"]
    return subprocess.Popen(on_cores(cores, [sys.executable, *command]), env=env)


@contextlib.contextmanager
def bare_server(script: str, *args: str, cores: set[int] | None = None) -> Iterator[tuple[str, int]]:
    """A baseline server (`bench/SCRIPT PORT ARGS…`) on a free port: its base URL and pid."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name(script)), str(port), *args]
    process = subprocess.Popen(on_cores(cores, command))
    try:
        asyncio.run(wait_ready(f"http://127.0.0.1:{port}/"))
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        stop_processes(process)


@contextlib.contextmanager
def voxbus_up(
    streams: int, extra: dict[str, str] | None = None, cores: set[int] | None = None
) -> Iterator[tuple[str, int]]:
    """`voxbus up` (in-process bus and store, the default) on a free port, in a scratch folder:
    no `.env` of the developer's, no Kafka or Redis from the environment. Its base URL and pid."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **{
                name: value
                for name, value in os.environ.items()
                if name not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")
            },
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WYOMING_PORT": "0",
            "HOST_NAME": base,
            "AUDIO_STORAGE_PATH": folder,
            "LOG_LEVEL": "WARNING",
            "MAX_CONCURRENT_SESSIONS": str(10 * streams),
            **(extra or {}),
        }
        process = subprocess.Popen(
            on_cores(cores, [sys.executable, "-m", "voxbus.cli", "up"]), env=env, cwd=folder
        )
        try:
            asyncio.run(wait_ready(f"{base}/ready"))
            yield base, process.pid
        finally:
            stop_processes(process)


def redis_commands(url: str) -> int:
    """Commands the Redis server has processed since it started (INFO stats)."""
    client = redis.Redis.from_url(url)
    try:
        return int(client.info("stats")["total_commands_processed"])
    finally:
        client.close()


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) of sorted values, nearest rank below; NaN if there are none."""
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def write_json(path: Path | None, document: dict[str, Any]) -> None:
    """A benchmark's results for bench/suite.py's report, when `--json PATH` was given."""
    if path is not None:
        path.write_text(json.dumps(_finite(document), indent=2, allow_nan=False) + "\n")


def _finite(value: Any) -> Any:
    """NaN and infinities (a percentile of nothing) as null: JSON has no NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


async def kafka_hop_ms(bootstrap_servers: str, topic: str, count: int = 250) -> list[float]:
    """The floor under anything that crosses the bus: one record every 20 ms produced (voxbus's
    producer settings) and read back by a partition tail, with nothing else running; ms, sorted."""
    bus = KafkaBus(bootstrap_servers, client_id="bench-hop", linger_ms=Settings().kafka_linger_ms)
    await bus.start()
    try:
        await bus.create_topics({topic: 1})
        tail = bus.partition_tail(topic, 0)
        async with tail:
            hops: list[float] = []

            async def read() -> None:
                while len(hops) < count:
                    for record in await tail.getmany(timeout_ms=1000):
                        hops.append(1000 * (time.time() - float(record.value.split(b" ", 1)[0])))

            reader = asyncio.create_task(read())
            for _ in range(count):
                value = str(time.time()).encode().ljust(640)  # a 20 ms frame's size
                await bus.send(topic, BusMessage(key=b"hop", value=value, headers=()))
                await asyncio.sleep(0.02)
            async with asyncio.timeout(30):
                await reader
    finally:
        await bus.close()
    return sorted(hops)
