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
from voxbus.devinfra.processes import LocalProcess, spawn

logger = logging.getLogger(__name__)

REDIS_START_TIMEOUT_S = 20.0


def _redis_server() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").is_file() else None
    )
    if found is None:
        raise SourceFailed("`redis-server` is not installed (not on PATH nor /usr/bin)")
    return found


class LocalRedis:
    """redis-server on a port and a folder of its own, which can be stopped and started again on the
    same port (a Redis outage, for fault tests). `persistent`: every write is appended to a file
    (fsynced each second, and at a clean stop), so a stop and a start keep the data, as a
    production Redis with persistence would; otherwise a stop loses it. `close()` stops it and
    removes its folder."""

    def __init__(self, *, persistent: bool = False) -> None:
        self._binary = _redis_server()
        self.workdir = Path(tempfile.mkdtemp(prefix="voxbus-redis-"))
        port = free_port()
        self.url = f"redis://{LOOPBACK}:{port}/0"
        self._argv = [
            self._binary,
            "--bind", LOOPBACK,
            "--port", str(port),
            "--save", "",
            "--appendonly", "yes" if persistent else "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", "",
        ]  # fmt: skip
        self._server: LocalProcess | None = None

    def start(self) -> None:
        """Start redis-server and wait until it answers (SourceFailed if it does not)."""
        if self._server is not None and self._server.popen.poll() is None:
            return
        server = self._server = spawn("redis-server", self._argv, self.workdir, self.workdir / "redis.log")
        try:
            server.wait_ready(lambda: redis_answers(self.url), REDIS_START_TIMEOUT_S, interval=0.05)
        except BaseException:
            server.stop()
            raise

    def stop(self) -> None:
        """Stop redis-server (SIGTERM: a clean shutdown, which writes what it holds if persistent)."""
        if self._server is not None:
            self._server.stop()

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalRedis:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    """Start redis-server, yield its URL, stop it and remove its folder on exit."""
    started = time.monotonic()
    with LocalRedis() as server:
        server.start()
        logger.info("redis-server ready at %s in %.2f s", server.url, time.monotonic() - started)
        yield server.url
