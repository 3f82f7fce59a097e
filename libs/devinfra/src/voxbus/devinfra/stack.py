"""`voxbus stack up|down|status` (`python -m voxbus.devinfra stack …`): voxbus as a cluster on
this machine, without Docker.

`up` starts, each as a process of its own that outlives the command: Kafka and Redis (as the
tests get them: `python -m voxbus.devinfra both`), two ingest and two telephony instances behind
HAProxy (one port for everything, WebSocket-aware, each instance health-checked on `/ready`),
one transcoder, writer and echo, and Prometheus scraping every voxbus process with the rules the
cluster deploys (`deploy/prometheus/rules.yml`). It waits until
each answers, prints the URLs, and records what it started in `DIR/stack.json`; every process
logs to `DIR/logs/NAME.log`, recordings go to `DIR/audio`. `down` stops what that file names
(a process whose command line is not the one started is left alone), and nothing else.
`status` says, per process, whether it runs and answers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from voxbus.devinfra.paths import find_repo_root
from voxbus.devinfra.ports import LOOPBACK, free_ports

STATE_FILE = "stack.json"
RULES = Path("deploy/prometheus/rules.yml")  # in the checkout: the rules the cluster deploys
INGESTS = 2
TELEPHONIES = 2
SINGLES = ("transcoder", "writer", "echo")
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
INFRA_LINES = ("KAFKA_BOOTSTRAP_SERVERS=", "REDIS_URL=")
# what the load balancer sends to telephony; everything else (every WebSocket, /api/audio, /test)
# goes to ingest
TELEPHONY_PATHS = ("/vonage/", "/exotel/", "/twilio/", "/ncco/", "/api/calls", "/callback")


class StackError(RuntimeError):
    """The stack cannot be started or read; the message says why and what to do."""


@dataclass
class Member:
    """A process of the stack: its name, its pid, the command it was started with, where it
    answers (`ready_url`: 200 once it serves), and for a voxbus process its service and port."""

    name: str
    pid: int
    command: list[str]
    ready_url: str | None = None
    service: str | None = None
    port: int | None = None


@dataclass
class Stack:
    directory: str
    url: str
    prometheus_url: str
    members: list[Member] = field(default_factory=list)

    @property
    def state_file(self) -> Path:
        return Path(self.directory) / STATE_FILE

    def save(self) -> None:
        self.state_file.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, directory: Path) -> Stack | None:
        path = directory / STATE_FILE
        if not path.is_file():
            return None
        data = json.loads(path.read_text())
        members = [Member(**member) for member in data.pop("members")]
        return cls(**data, members=members)


def up(directory: Path, *, port: int, prometheus_port: int) -> Stack:
    """Start the stack in `directory` (its state, logs and recordings) with the load balancer on
    `port`; return it once every process answers."""
    directory = directory.resolve()
    running = Stack.load(directory)
    if running is not None and any(_alive(member) for member in running.members):
        raise StackError(f"a stack already runs from {directory}: `voxbus stack down` first")
    missing = [name for name in ("haproxy", "prometheus") if _binary(name) is None]
    if missing:
        raise StackError(f"{' and '.join(missing)} not found: apt-get install -y haproxy prometheus")
    for folder in ("logs", "audio", "prometheus"):
        (directory / folder).mkdir(parents=True, exist_ok=True)
    stack = Stack(str(directory), f"http://{LOOPBACK}:{port}", f"http://{LOOPBACK}:{prometheus_port}")
    try:
        env = _start_infra(stack)
        _start_services(stack, env, port)
        _start_balancer(stack, port)
        _start_prometheus(stack, prometheus_port)
        _wait_ready(stack)
    except BaseException:
        down(directory)
        raise
    return stack


def down(directory: Path) -> list[str]:
    """Stop every process the stack in `directory` started (the last started first); the names
    of those that were still running."""
    stack = Stack.load(directory.resolve())
    if stack is None:
        return []
    stopped = []
    for member in reversed(stack.members):
        if _alive(member):
            _stop(member)
            stopped.append(member.name)
    stack.state_file.unlink(missing_ok=True)
    return stopped


def status(directory: Path) -> list[tuple[str, int, str]]:
    """Each process: (name, pid, "ready" | "running" | "stopped")."""
    stack = Stack.load(directory.resolve())
    if stack is None:
        raise StackError(f"no stack runs from {directory.resolve()}: `voxbus stack up` starts one")
    rows = []
    for member in stack.members:
        state = "stopped"
        if _alive(member):
            state = "ready" if member.ready_url is None or _answers(member.ready_url) else "running"
        rows.append((member.name, member.pid, state))
    return rows


# -- starting -------------------------------------------------------------------------------------


def _spawn(
    stack: Stack,
    name: str,
    command: list[str],
    env: dict[str, str],
    ready_url: str | None,
    *,
    service: str | None = None,
    port: int | None = None,
) -> Member:
    log = Path(stack.directory) / "logs" / f"{name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=stack.directory,
            start_new_session=True,  # outlives `up`; Ctrl-C in the shell reaches none of them
        )
    member = Member(name, process.pid, command, ready_url, service, port)
    stack.members.append(member)
    stack.save()
    return member


def _start_infra(stack: Stack) -> dict[str, str]:
    """Kafka and Redis; the environment that points voxbus at them."""
    env_file = Path(stack.directory) / "infra.env"
    env_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "voxbus.devinfra", "both"]
    infra_env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL")}
    log = Path(stack.directory) / "logs" / "kafka-redis.log"
    with env_file.open("wb") as out, log.open("ab") as err:
        process = subprocess.Popen(
            command, env=infra_env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
        )
    stack.members.append(Member("kafka-redis", process.pid, command))
    stack.save()
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        lines = env_file.read_text().splitlines()
        found = [line for line in lines if line.startswith(INFRA_LINES)]
        if len(found) == len(INFRA_LINES):
            return dict(line.split("=", 1) for line in found)
        if process.poll() is not None:
            raise StackError(f"Kafka and Redis did not start; see {log}")
        time.sleep(0.2)  # another process: its output file is all there is to wait on
    raise StackError(f"Kafka and Redis not up within {READY_TIMEOUT:g} s; see {log}")


def _start_services(stack: Stack, infra: dict[str, str], port: int) -> None:
    names = [f"ingest-{n}" for n in range(1, INGESTS + 1)]
    names += [f"telephony-{n}" for n in range(1, TELEPHONIES + 1)]
    names += list(SINGLES)
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VOXBUS_")},
        **infra,
        "AUDIO_STORAGE_PATH": str(Path(stack.directory) / "audio"),
        "HOST": LOOPBACK,
        "HOST_NAME": stack.url,  # what webhooks' answers point carriers at: the load balancer
        "WYOMING_PORT": "0",  # two ingests on one host would share 10700
    }
    for name, service_port in zip(names, free_ports(len(names)), strict=True):
        service = name.split("-")[0]
        command = [sys.executable, "-m", "voxbus.cli", "serve", service, "--port", str(service_port)]
        env = {**base, "POD_NAME": name}
        ready = f"http://{LOOPBACK}:{service_port}/ready"
        _spawn(stack, name, command, env, ready, service=service, port=service_port)


def _service_addresses(stack: Stack, service: str) -> list[tuple[str, str]]:
    return [
        (member.name, f"{LOOPBACK}:{member.port}") for member in stack.members if member.service == service
    ]


def haproxy_config(
    bind: str, ingests: Sequence[tuple[str, str]], telephonies: Sequence[tuple[str, str]]
) -> str:
    """One address for everything: telephony's webhooks and call API to telephony (round
    robin), everything else to ingest (fewest connections); an instance whose `/ready` fails is
    taken out within 2 s. WebSockets pass through (`timeout tunnel`). `voxbus stack` and
    docker-compose (`deploy/compose/haproxy.cfg`) route alike."""

    def servers(members: Sequence[tuple[str, str]]) -> str:
        return "".join(
            f"  server {name} {address} check inter 1s fall 2 rise 1\n" for name, address in members
        )

    paths = " ".join(TELEPHONY_PATHS)
    return (
        "defaults\n"
        "  mode http\n"
        "  timeout connect 5s\n"
        "  timeout client 60s\n"
        "  timeout server 60s\n"
        "  timeout tunnel 2h\n"
        "  option http-server-close\n"
        "frontend voxbus\n"
        f"  bind {bind}\n"
        f"  acl telephony path_beg {paths}\n"
        "  use_backend telephony if telephony\n"
        "  default_backend ingest\n"
        "backend ingest\n"
        "  balance leastconn\n"
        "  option httpchk GET /ready\n"
        "  http-check expect status 200\n"
        f"{servers(ingests)}"
        "backend telephony\n"
        "  balance roundrobin\n"
        "  option httpchk GET /ready\n"
        "  http-check expect status 200\n"
        f"{servers(telephonies)}"
    )


def _start_balancer(stack: Stack, port: int) -> None:
    config = Path(stack.directory) / "haproxy.cfg"
    ingests, telephonies = _service_addresses(stack, "ingest"), _service_addresses(stack, "telephony")
    config.write_text(haproxy_config(f"{LOOPBACK}:{port}", ingests, telephonies))
    command = [_binary("haproxy") or "haproxy", "-db", "-f", str(config)]
    _spawn(stack, "haproxy", command, dict(os.environ), f"{stack.url}/ready")


def prometheus_config(targets: dict[str, list[str]], rules: Path) -> str:
    """Every voxbus process scraped every 5 s, labelled with its service (`job`), and the
    cluster's rules (`deploy/prometheus/rules.yml`)."""
    jobs = "".join(
        f"  - job_name: {service}\n    static_configs:\n      - targets: {json.dumps(addresses)}\n"
        for service, addresses in sorted(targets.items())
    )
    return (
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n"
        f"rule_files:\n  - {json.dumps(str(rules))}\n"
        f"scrape_configs:\n{jobs}"
    )


def _start_prometheus(stack: Stack, port: int) -> None:
    targets: dict[str, list[str]] = {}
    for member in stack.members:
        if member.service is not None:
            targets.setdefault(member.service, []).append(f"{LOOPBACK}:{member.port}")
    config = Path(stack.directory) / "prometheus.yml"
    config.write_text(prometheus_config(targets, _rules()))
    command = [
        _binary("prometheus") or "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={Path(stack.directory) / 'prometheus'}",
        f"--web.listen-address={LOOPBACK}:{port}",
    ]
    _spawn(stack, "prometheus", command, dict(os.environ), f"{stack.prometheus_url}/-/ready")


def _rules() -> Path:
    root = find_repo_root(Path(__file__).resolve().parent)
    rules = root / RULES if root is not None else None
    if rules is None or not rules.is_file():
        raise StackError(f"{RULES} not found: voxbus stack runs from a checkout of voxbus")
    return rules


def _wait_ready(stack: Stack) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    for member in stack.members:
        while member.ready_url is not None and not _answers(member.ready_url):
            if not _alive(member):
                log = Path(stack.directory) / "logs" / f"{member.name}.log"
                raise StackError(f"{member.name} exited; see {log}")
            if time.monotonic() > deadline:
                raise StackError(f"{member.name} not ready within {READY_TIMEOUT:g} s")
            time.sleep(0.2)  # another process: its HTTP answer is all there is to wait on


# -- stopping and probing ------------------------------------------------------------------------


def _binary(name: str) -> str | None:
    """The program's path; Debian puts haproxy in /usr/sbin, which a user's PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _alive(member: Member) -> bool:
    """Whether the pid still runs the command the stack started (not a process that reused it)."""
    try:
        cmdline = Path(f"/proc/{member.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return [part.decode(errors="replace") for part in cmdline if part] == member.command


def _stop(member: Member) -> None:
    os.kill(member.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while _alive(member) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(member):
        os.kill(member.pid, signal.SIGKILL)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
