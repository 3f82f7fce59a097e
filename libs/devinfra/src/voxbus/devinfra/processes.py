"""Local server processes: start with output to a log file, wait until ready, stop for sure."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from voxbus.devinfra.errors import SourceFailed

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_TAIL_LINES = 60


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when this process dies, so a server
    does not outlive a killed test run (Linux only; None elsewhere)."""
    try:
        # looked up here, in the parent: loading a library in the forked child can deadlock
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


@dataclass
class LocalProcess:
    """A started server process and the file that holds its stdout and stderr."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = _TAIL_LINES) -> str:
        """The last `lines` lines of the process's log ("" if there is none)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, probe: Callable[[], bool], timeout: float, interval: float = 0.2) -> None:
        """Poll `probe` until it returns True; raise SourceFailed with the log tail if the
        process exits or `timeout` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.popen.poll()
            if code is not None:
                raise SourceFailed(
                    f"{self.name} exited with {code} before it was ready; "
                    f"its log ends with:\n{self.log_tail()}"
                )
            if probe():
                return
            if time.monotonic() >= deadline:
                raise SourceFailed(
                    f"{self.name} was not ready within {timeout:.0f} s; its log ends with:\n{self.log_tail()}"
                )
            time.sleep(interval)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait up to `timeout` seconds, then SIGKILL."""
        if self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM for %.0f s; killing it", self.name, timeout)
            self.popen.kill()
            self.popen.wait()


def spawn(name: str, argv: Sequence[str], cwd: Path, log_path: Path) -> LocalProcess:
    """Start `argv` in its own session (a terminal's Ctrl-C reaches only our handler, which
    stops it in order) with stdout and stderr appended to `log_path`."""
    # PR_SET_PDEATHSIG fires when the forking *thread* ends, so only the main thread, which
    # lives as long as the process, can ask for it without killing the server early.
    on_main_thread = threading.current_thread() is threading.main_thread()
    preexec = _parent_death_signal() if on_main_thread else None
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec,  # noqa: PLW1509
        )
    logger.debug("started %s (pid %d): %s", name, popen.pid, " ".join(argv))
    return LocalProcess(name=name, popen=popen, log_path=log_path)
