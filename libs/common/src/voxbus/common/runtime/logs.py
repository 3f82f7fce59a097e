"""Structured JSON logs: one object per line on stderr, with the session id when there is one."""

import json
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final, TextIO

_session_id: ContextVar[str | None] = ContextVar("voxbus_session_id", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


# aiokafka logs these at ERROR and retries: a consumer looks its group coordinator up before the
# broker elected one (GroupCoordinatorNotAvailable), or asks a partition's offsets before its leader
# is known (NotLeaderForPartition) -- every fresh topic and every fresh broker does both. Only a
# retriable error (aiokafka's `retriable` flag) is demoted; the same message with a fatal one stays.
_KAFKA_RETRIED: Final = frozenset(
    {
        ("aiokafka.consumer.group_coordinator", "Group Coordinator Request failed: %s"),
        ("aiokafka.consumer.fetcher", "Failed fetch offsets from %s: %s"),
        ("aiokafka.consumer.fetcher", "Failed fetch messages from %s: %s"),
    }
)


class KafkaTransients(logging.Filter):
    """Logs aiokafka's ERRORs about errors it retries (see `_KAFKA_RETRIED`) as WARNINGs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and (record.name, record.msg) in _KAFKA_RETRIED
            and isinstance(record.args, tuple)
            and record.args
            and getattr(record.args[-1], "retriable", False) is True
        ):
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


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


def json_handler(stream: TextIO) -> logging.Handler:
    """A handler writing JSON lines to `stream`, with aiokafka's retried errors as warnings."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(KafkaTransients())
    return handler


def configure_logging(level: str) -> None:
    """Send every logger's records, as JSON lines, to stderr at `level`."""
    root = logging.getLogger()
    root.handlers[:] = [json_handler(sys.stderr)]
    root.setLevel(level)
    # Python's warnings (numpy's RuntimeWarning, a DeprecationWarning) print plain text to stderr;
    # taken into logging, they become JSON lines on the `py.warnings` logger like everything else.
    logging.captureWarnings(True)
    # opuslib 3.0.1 (its last release) compares with `is not 0`: Python warns when it compiles
    # it, at a fresh install's first start; harmless, and nothing an operator can act on
    warnings.filterwarnings("ignore", message='"is not" with a literal', category=SyntaxWarning)
    # aiokafka logs every rebalance step at INFO; keep its warnings and errors.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def tag_session(session_id: str) -> None:
    """From now on, every log line this task writes (inside the `session_context` block it is in)
    names `session_id`: a connection that opens one session after another says which is on."""
    _session_id.set(session_id)


@contextmanager
def session_context(session_id: str) -> Iterator[None]:
    """Tag every log line written inside the block (in this task) with `session_id`."""
    token = _session_id.set(session_id)
    try:
        yield
    finally:
        _session_id.reset(token)
