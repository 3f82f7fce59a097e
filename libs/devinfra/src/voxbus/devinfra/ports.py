"""Free TCP ports on the loopback interface, below the kernel's ephemeral range.

A port the kernel handed out for `bind(0)` comes from the same range it takes the local ports of
outgoing connections from (Linux: `net.ipv4.ip_local_port_range`, 32768-60999 by default). Between
the moment a port is found free and the moment a server binds it, any client in any process
(a Kafka consumer, a Redis client) may be given that port for a connection, and the server fails
with "address already in use". Ports below that range are never handed out that way, so a port
picked there stays free unless something binds it by number.
"""

from __future__ import annotations

import contextlib
import random
import socket
from pathlib import Path

LOOPBACK = "127.0.0.1"
LOWEST = 10_000  # below: ports that well-known services are configured to use
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_DEFAULT_EPHEMERAL_LOW = 32_768  # Linux's default; IANA's (and macOS's) starts at 49152
_TRIES = 200
# ports this process handed out already: a server it starts may not have bound its port yet, so
# the next pick must not land on it too (two test servers were once given the same port)
_handed_out: set[int] = set()


def ephemeral_low(source: Path = _EPHEMERAL_RANGE) -> int:
    """The lowest port the kernel gives outgoing connections."""
    try:
        return int(source.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return _DEFAULT_EPHEMERAL_LOW


def free_ports(count: int, *, rng: random.Random | None = None) -> list[int]:
    """Return `count` distinct ports, free on 127.0.0.1 a moment ago, that the kernel does not
    hand to outgoing connections. All sockets stay bound until every port is read."""
    rng = rng or random.SystemRandom()
    high = ephemeral_low()
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(_TRIES * count):
            if len(ports) == count:
                break
            port = rng.randrange(LOWEST, high) if high > LOWEST else 0
            if port in _handed_out:
                continue
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            ports.append(int(sock.getsockname()[1]))
        if len(ports) < count:
            raise OSError(f"no {count} free ports between {LOWEST} and {high} on {LOOPBACK}")
        if len(_handed_out) > (high - LOWEST) // 2:
            _handed_out.clear()  # a long run: let the oldest be picked again rather than run out
        _handed_out.update(ports)
        return ports


def free_port() -> int:
    """Return one port that was free on 127.0.0.1 a moment ago (see `free_ports`)."""
    return free_ports(1)[0]


def accepts_tcp(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
