"""Malformed HTTP requests: one short, rate-limited WARNING line instead of an ERROR with a traceback.

aiohttp answers a request its parser rejects (an 8 KB URL, a bad Content-Length, a broken status
line or chunk size) with 400 and logs it on the `aiohttp.server` logger from
`RequestHandler.handle_error`, as `logger.exception(...)`: an ERROR with a full traceback, one per
request. Such requests are the client's fault and come by the hundred from scanners, so they would
bury real errors. aiohttp offers no hook for this (`run_app` takes no handler class), so a filter on
that logger rewrites those records in place, which `logging.Filter` allows, and drops repeats within
an interval, counting them in the next line. Every other record of that logger (a handler's
exception, a 500) passes untouched.
"""

import logging
import time
from collections.abc import Callable
from typing import Final

from aiohttp.http_exceptions import HttpProcessingError

LOGGER: Final = "aiohttp.server"
INTERVAL_SECONDS: Final = 10.0
_MAX_REASON_CHARS: Final = 160


class MalformedRequestFilter(logging.Filter):
    """At most one WARNING per `interval` seconds for requests aiohttp's parser refused."""

    def __init__(
        self, *, interval: float = INTERVAL_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._interval, self._clock = interval, clock
        self._next_line_at = float("-inf")
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError) or record.levelno < logging.WARNING:
            return True
        now = self._clock()
        if now < self._next_line_at:
            self._suppressed += 1
            return False
        args = record.args if isinstance(record.args, tuple) else ()
        record.peer = str(args[0]) if args else "unknown"
        record.status = error.code
        record.reason = _one_line(error)
        record.suppressed = self._suppressed
        record.msg, record.args = "malformed HTTP request refused", ()
        record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        record.exc_info, record.exc_text = None, None
        self._next_line_at, self._suppressed = now + self._interval, 0
        return True


def _one_line(error: HttpProcessingError) -> str:
    # aiohttp's messages span lines: what was wrong, the offending line, a caret under it
    parts = [line.strip() for line in str(error.message).splitlines() if line.strip(" ^")]
    text = " ".join([f"{type(error).__name__}:", *parts])
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


def quiet_malformed_requests() -> None:
    """Install the filter on aiohttp's server logger, once per process."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, MalformedRequestFilter) for f in logger.filters):
        logger.addFilter(MalformedRequestFilter())
