"""A protocol adapter driven as the connection driver drives it, over a connection that records
what its client would receive; and the text a client may send, from any string to every field
of every message the protocols know, given any JSON value."""

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import hypothesis.strategies as st

from voxbus.common.call_events import CallEvent
from voxbus.common.client_messages import ClientMessage
from voxbus.common.principal import OPERATOR, Principal
from voxbus.common.records import AudioFormat
from voxbus.common.settings import Settings
from voxbus.ingest.protocols import ROUTES
from voxbus.ingest.protocols.base import Adapter, Opening, SessionRefused
from voxbus.ingest.sessions import SessionSpec

SETTINGS = Settings(_env_file=None)  # type: ignore[call-arg]
KEY = "the-key"


@dataclass
class RecordingConnection:
    """A `Connection` that takes every session and chunk, and keeps what the client would get:
    each message as the wire carries it (the adapter's `render`), and the close."""

    adapter: Adapter
    settings: Settings = SETTINGS
    session_id: str | None = None
    chunk_count: int = 0
    finished: bool = False
    session_format: AudioFormat | None = None
    chunk_limit: int = 64 * 1024
    sent: list[str | bytes] = field(default_factory=list)
    closed: tuple[int, str] | None = None
    opened: list[SessionSpec] = field(default_factory=list)
    chunks: list[bytes] = field(default_factory=list)
    events: list[CallEvent] = field(default_factory=list)

    async def authenticate(self, key: str | None) -> Principal | None:
        return OPERATOR if key == KEY else None

    async def open(self, spec: SessionSpec) -> str:
        self.opened.append(spec)
        self.session_id, self.session_format, self.finished = str(uuid.uuid4()), spec.format, False
        return self.session_id

    async def resume(self, session_id: str) -> None:
        self.session_id, self.finished = session_id, False
        self.session_format = AudioFormat(codec="pcm_s16le", rate=16000, channels=1)

    async def audio(self, data: bytes, on_durable: Callable[[bool], Awaitable[None]]) -> None:
        self.chunks.append(data)
        self.chunk_count += 1
        await on_durable(True)

    async def finish(self, reason: str, *, wait: bool) -> dict[str, Any] | None:
        self.finished = True
        return {"status": "completed", "file_path": "x.wav", "duration_seconds": 0.0, "error": None}

    async def end_session(self) -> None:
        self.session_id, self.finished = None, False

    async def ignore_close_requests(self) -> bool:
        return True

    async def send(self, message: ClientMessage) -> None:
        self.sent.append(self.adapter.render(message))

    async def send_text(self, text: str) -> None:
        self.sent.append(text)

    async def send_binary(self, data: bytes) -> None:
        self.sent.append(data)

    async def publish(self, event: CallEvent) -> None:
        self.events.append(event)

    async def close(self, code: int, message: str = "") -> None:
        closing = self.adapter.closing_message(code, message)
        if closing is not None:
            self.sent.append(self.adapter.render(closing))
        self.closed = (code, message)


@dataclass
class Outcome:
    """What the client saw: the messages, the close, and the refusal that ended the connection
    (the driver sends its reply, then closes with its code)."""

    connection: RecordingConnection
    refused: SessionRefused | None


def drive(
    path: str,
    texts: list[str] = [],  # noqa: B006 - never mutated
    *,
    query: Mapping[str, str] | None = None,
    match_info: Mapping[str, str] | None = None,
    start: list[str] = [],  # noqa: B006 - never mutated
) -> Outcome:
    """Open the adapter of `path` (as `/api/ws/audio`, `/ws`, `/ws/vonage`, …) with `query`,
    send it the `start` texts, then `texts`; what the client saw. Only a SessionRefused may end
    it (it is the driver's to answer); anything else raised is a defect, and fails the test."""
    adapter = ROUTES[path](Opening(query=query or {}, match_info=match_info or {}, principal=OPERATOR))
    conn = RecordingConnection(adapter)

    async def run() -> SessionRefused | None:
        try:
            if not await adapter.on_open(conn):  # type: ignore[arg-type]
                return None
            for text in [*start, *texts]:
                await adapter.on_text(conn, text)  # type: ignore[arg-type]
        except SessionRefused as refused:
            return refused
        finally:
            await adapter.on_end(conn)  # type: ignore[arg-type]
        return None

    return Outcome(connection=conn, refused=asyncio.run(run()))


# -- what a client may send -------------------------------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(("", "0", "1", "true", "16000", "opus", "pcm", "control", "close_session")),
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def objects(fields: Mapping[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with any of `fields` (each its strategy's value, or any JSON value), and
    others besides."""
    known = st.fixed_dictionaries(
        {}, optional={name: st.one_of(values, JSON_VALUES) for name, values in fields.items()}
    )
    extra = st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=2)
    return st.builds(lambda extra, known: {**extra, **known}, extra, known)


def texts(*shapes: st.SearchStrategy[Any]) -> st.SearchStrategy[str]:
    """A text message: any string, any JSON, or JSON in one of `shapes`, sometimes cut short."""
    encoded = st.one_of(JSON_VALUES, *shapes).map(json.dumps)
    cut = st.tuples(encoded, st.integers(0, 200)).map(lambda pair: pair[0][: pair[1]])
    return st.one_of(st.text(max_size=60), encoded, encoded, cut)


def nested(depth: int, *, objects: bool = False) -> str:
    """JSON nested `depth` deep: arrays, or objects one key each."""
    if objects:
        return '{"a": ' * depth + "0" + "}" * depth
    return "[" * depth + "]" * depth
