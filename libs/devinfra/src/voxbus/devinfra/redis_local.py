"""A throw-away local `redis-server` on a free loopback port, without persistence."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from voxbus.devinfra.errors import SourceFailed
from voxbus.devinfra.ports import LOOPBACK, free_port
from voxbus.devinfra.probes import redis_answers
from voxbus.devinfra.processes import spawn

logger = logging.getLogger(__name__)

REDIS_START_TIMEOUT_S = 20.0


def _redis_server() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if found is None:
        raise SourceFailed("`redis-server` is not installed (not on PATH nor /usr/bin)")
    return found


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    """Start redis-server, yield its URL, stop it and remove its folder on exit."""
    binary = _redis_server()
    workdir = Path(tempfile.mkdtemp(prefix="voxbus-redis-"))
    try:
        port = free_port()
        argv = [
            binary,
            "--bind", LOOPBACK,
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        started = time.monotonic()
        server = spawn("redis-server", argv, workdir, workdir / "redis.log")
        try:
            url = f"redis://{LOOPBACK}:{port}/0"
            server.wait_ready(lambda: redis_answers(url), REDIS_START_TIMEOUT_S, interval=0.05)
            logger.info("redis-server ready at %s in %.2f s", url, time.monotonic() - started)
            yield url
        finally:
            server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
