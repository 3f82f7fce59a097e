"""The seed client's stdin commands (start, stop, resume, quit), and signals that mean quit."""

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Final

log = logging.getLogger("voxbus.echo_client")

COMMANDS: Final = ("start", "stop", "resume", "quit")


class Controls:
    """The state the stdin commands change: whether to send, and whether to quit."""

    def __init__(self, *, sending: bool) -> None:
        self.sending = asyncio.Event()
        self.quit = asyncio.Event()
        if sending:
            self.sending.set()

    def apply(self, line: str) -> None:
        command = line.strip().lower()
        if not command:
            return
        if command in ("start", "resume"):
            self.sending.set()
        elif command == "stop":
            self.sending.clear()
        elif command == "quit":
            self.quit.set()
        else:
            sys.stderr.write(f"unknown command {command!r}; commands: {', '.join(COMMANDS)}\n")
            return
        log.info("command: %s", command)


def read_stdin_lines(loop: asyncio.AbstractEventLoop, lines: "asyncio.Queue[str | None]") -> None:
    """Deliver stdin's lines to `lines` from a daemon thread, then None at end of input.

    A daemon thread, not the loop's executor (asyncio.run joins that at exit, so a read blocked on
    a terminal would hang the exit) nor connect_read_pipe (it sets O_NONBLOCK on a terminal that
    stdout shares, and refuses regular files). os.read takes no Python lock, so the thread blocked
    in it does not stop the interpreter from exiting.
    """

    def deliver(line: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the client is exiting
            loop.call_soon_threadsafe(lines.put_nowait, line)

    def read() -> None:
        pending = b""
        while True:
            try:
                block = os.read(0, 4096)
            except OSError:  # no stdin at all
                block = b""
            if not block:
                break
            *complete, pending = (pending + block).split(b"\n")
            for line in complete:
                deliver(line.decode(errors="replace"))
        if pending:
            deliver(pending.decode(errors="replace"))
        deliver(None)

    threading.Thread(target=read, name="echo-client-stdin", daemon=True).start()


async def follow_commands(controls: Controls, *, terminal: bool) -> None:
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    read_stdin_lines(asyncio.get_running_loop(), lines)
    while (line := await lines.get()) is not None:
        controls.apply(line)
    # Ctrl-D at a terminal quits; a pipe or /dev/null at its end just has no more commands.
    if terminal:
        controls.quit.set()


@contextlib.contextmanager
def quit_on_signals(controls: Controls) -> Iterator[None]:
    """Ctrl-C and SIGTERM act as `quit`: the socket is closed cleanly and the summary printed."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, controls.quit.set)
    try:
        yield
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
