"""Structured JSON logs: one object per line on stderr, with the session id when there is one."""

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

_session_id: ContextVar[str | None] = ContextVar("voxbus_session_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: ts, level, logger, msg, session_id, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        session_id = _session_id.get()
        if session_id is not None:
            entry["session_id"] = session_id
        for name, value in vars(record).items():
            if name not in _STANDARD and not name.startswith("_"):
                entry[name] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str) -> None:
    """Send every logger's records, as JSON lines, to stderr at `level`."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Python's warnings (numpy's RuntimeWarning, a DeprecationWarning) print plain text to stderr;
    # taken into logging, they become JSON lines on the `py.warnings` logger like everything else.
    logging.captureWarnings(True)
    # aiokafka logs every rebalance step at INFO; keep its warnings and errors.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


@contextmanager
def session_context(session_id: str) -> Iterator[None]:
    """Tag every log line written inside the block (in this task) with `session_id`."""
    token = _session_id.set(session_id)
    try:
        yield
    finally:
        _session_id.reset(token)
