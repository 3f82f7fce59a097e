"""The session protocol from the client's side (docs/protocols/session.md): open a recording
session (or resume one), send the chunks and count their acks, then close it and return the
server's last word.

Chunks go out at real time (`realtime`) or as fast as the acks come back, with at most `WINDOW`
unacknowledged. Whatever the protocol says to answer with a resume, the client resumes by itself,
with backoff, once it knows the session's id: a close with 1012 (restarting), 1011 (a chunk not
stored, an internal error) or without a close frame (a dropped connection), `Too many
connections for session` (the old socket is still held), a handshake a proxy refused with a 5xx
while pods change. The resume's greeting counts the chunks the session holds; every chunk after
those goes again, re-read from the file when the count is below what this client already let go
of (a pod that died before saving its count). It gives up after `BACKOFF_SECONDS` attempts in a
row that brought no new ack.
"""

import asyncio
import json
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from voxbus.cli.echo_client.errors import ClientError
from voxbus.cli.stream.audio import CHUNK_SECONDS, AudioFile
from voxbus.common.client_messages import (
    ChunkAck,
    ChunkFailed,
    ClientMessage,
    CloseSession,
    CloseTimedOut,
    ErrorReply,
    MessageError,
    SessionClosed,
    SessionCreated,
    SessionFailed,
    SessionResumed,
)

WINDOW: Final = 16  # chunks sent and not yet acknowledged, at most
SOCKET_PATH: Final = "/api/ws/audio"
# closes a resume answers: restarting; not stored or internal error; dropped (no close frame, or
# aiohttp's 1000 for a connection that ended without one). A session that is over answers the
# resume with `Session not found`, which ends the command.
RESUMABLE_CLOSES: Final = frozenset({1012, 1011, 1006, 1000, None})
RESUMABLE_ERRORS: Final = frozenset({"Too many connections for session", "Internal error"})
BACKOFF_SECONDS: Final = (0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0)  # then give up
CONNECT_TIMEOUT: Final = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)
ANSWER_SECONDS: Final = 60.0  # for the greeting, an ack, the close's answer
LATENCIES_KEPT: Final = 10_000  # the latest acks' latencies, for p50/p95


class Reconnect(Exception):
    """The socket ended in a way a resume answers; `why`, for the message if it never comes back."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


@dataclass
class Counts:
    """What the progress display and the result show; updated as chunks go and acks come."""

    total_seconds: float | None
    sent_seconds: float = 0.0
    acked: int = 0
    session_id: str | None = None
    resumes: int = 0  # sockets that resumed the session after one ended
    # seconds from a chunk's send to its ack, for the latest LATENCIES_KEPT chunks
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCIES_KEPT))


@dataclass(frozen=True, slots=True)
class Target:
    url: str  # ws(s)://host/api/ws/audio
    api_key: str | None
    user_id: str | None
    realtime: bool


class StreamSession:
    def __init__(self, http: aiohttp.ClientSession, target: Target, audio: AudioFile, counts: Counts) -> None:
        self._http, self._target, self._audio, self._counts = http, target, audio, counts
        self._chunks: Iterator[bytes] = audio.chunks()
        self._next = 0  # index of the next chunk to take from the file
        self._outbox: deque[tuple[int, bytes]] = deque()  # to send (again): (index, chunk)
        self._unacked: deque[tuple[int, bytes, float]] = deque()  # on the wire: (index, chunk, sent at)
        self._final: SessionFailed | None = None  # the session ended before the close
        self._lost = False  # a socket of this session ended: the next one resumes

    async def run(self, resume: str | None) -> SessionClosed | SessionFailed:
        """Stream the file to a new session (or to `resume`) and close it; the server's answer."""
        if resume is not None:
            await self._check_resumable(resume)
        session_id, failures, acked_before = resume, 0, -1
        while True:
            try:
                ws, acked = await self._open(session_id)
                async with ws:
                    session_id = self._counts.session_id
                    if self._lost:
                        self._counts.resumes += 1
                        self._lost = False
                    self._resume_at(acked)
                    return await self._converse(ws)
            except Reconnect as lost:
                why = lost.why
            except aiohttp.ClientConnectionError as exc:
                if session_id is None:
                    raise ClientError(f"cannot reach {self._target.url}: {exc}") from None
                why = f"cannot reach {self._target.url}: {exc}"
            if session_id is None:
                raise ClientError(why)
            if self._counts.acked > acked_before:  # progress since the last attempt
                failures, acked_before = 0, self._counts.acked
            if failures >= len(BACKOFF_SECONDS):
                raise ClientError(f"gave up resuming session {session_id}: {why}")
            await asyncio.sleep(BACKOFF_SECONDS[failures])
            failures += 1
            self._lost = True

    async def _check_resumable(self, session_id: str) -> None:
        """A session resumes with the format it was opened with (the server ignores the query
        then): refuse a file that decodes to another rate or channel count, or a session that
        does not take PCM, before a chunk is sent. Where the session's info cannot be read over
        HTTP next to the socket's URL, the resume itself is the check."""
        info_url = _info_url(self._target.url, session_id)
        if info_url is None:
            return
        headers = {"Authorization": f"Bearer {self._target.api_key}"} if self._target.api_key else {}
        try:
            async with self._http.get(info_url, headers=headers) as response:
                if response.status != 200:
                    return  # the socket says why (not found, a bad key) in its own words
                info = await response.json()
        except (aiohttp.ClientError, ValueError):
            return
        audio = self._audio
        session = (info.get("format"), info.get("sample_rate"), info.get("channels"))
        if session != ("pcm", audio.rate, audio.channels):
            raise ClientError(
                f"session {session_id} records {session[0]} at {session[1]} Hz, {session[2]} channel(s); "
                f"{audio.path.name} is sent as pcm at {audio.rate} Hz, {audio.channels} channel(s): "
                "it cannot continue that session"
            )

    async def _open(self, session_id: str | None) -> tuple[aiohttp.ClientWebSocketResponse, int]:
        """The socket and the number of chunks the session already has."""
        target = self._target
        headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}
        if session_id is None:
            url, query = (
                target.url,
                {
                    "sample_rate": str(self._audio.rate),
                    "channels": str(self._audio.channels),
                    "format": "pcm",
                },
            )
            if target.user_id is not None:
                query["user_id"] = target.user_id
        else:
            url, query = f"{target.url.rstrip('/')}/{session_id}", {}
        try:
            ws = await self._http.ws_connect(url, params=query, headers=headers, timeout=CONNECT_TIMEOUT)
        except aiohttp.WSServerHandshakeError as exc:
            refused = f"the server refused the socket: HTTP {exc.status} {exc.message}"
            if exc.status >= 500 and session_id is not None:  # a proxy while pods change
                raise Reconnect(refused) from None
            raise ClientError(refused) from None
        try:
            first = await self._receive(ws)
            if not isinstance(first, SessionCreated | SessionResumed):
                raise ClientError(f"unexpected first message: {first.to_wire()}")
        except BaseException:
            await ws.close()
            raise
        self._counts.session_id = first.session_id
        return ws, first.chunk_count

    def _resume_at(self, acked: int) -> None:
        """The session holds `acked` chunks: every one after them goes (again), in order."""
        self._counts.acked = acked
        self._outbox.extendleft((index, chunk) for index, chunk, _ in reversed(self._unacked))
        self._unacked.clear()
        held = self._outbox[0][0] if self._outbox else self._next
        if acked < held:  # the session lost chunks this client let go of: read the file again
            self._chunks, self._next = self._audio.chunks(), 0
            self._outbox.clear()
        while self._outbox and self._outbox[0][0] < acked:
            self._outbox.popleft()
        while self._next < acked and self._take():
            self._outbox.clear()

    def _take(self) -> bool:
        """The file's next chunk into the outbox; False when the file is all taken."""
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._outbox.append((self._next, chunk))
        self._next += 1
        return True

    async def _converse(self, ws: aiohttp.ClientWebSocketResponse) -> SessionClosed | SessionFailed:
        acked = asyncio.Event()
        try:
            async with asyncio.TaskGroup() as group:
                reader = group.create_task(self._read_acks(ws, acked), name="stream-acks")
                await self._send_all(ws, acked)
                while self._unacked and self._final is None:  # the reader's failure cancels this
                    acked.clear()
                    await acked.wait()
                reader.cancel()
        except ExceptionGroup as failed:  # the reader's, or a send to a socket that closed
            raise _cause(failed) from None
        if self._final is not None:
            return self._final
        await ws.send_str(CloseSession().to_wire())
        answer = await self._receive(ws)
        if isinstance(answer, SessionClosed | SessionFailed):
            return answer
        if isinstance(answer, CloseTimedOut):
            raise ClientError(
                f"session {answer.session_id} is closing, but its recording was not complete in time; "
                f"`voxbus sessions show {answer.session_id}` tells when it is"
            )
        raise ClientError(f"unexpected answer to close_session: {answer.to_wire()}")

    async def _send_all(self, ws: aiohttp.ClientWebSocketResponse, acked: asyncio.Event) -> None:
        """Every chunk in the outbox, then the rest of the file. A chunk leaves the outbox only as
        it goes on the wire, so one this is cancelled before sending is sent on the next socket."""
        started, first = time.monotonic(), None
        while self._final is None and (self._outbox or self._take()):
            index, chunk = self._outbox[0]
            first = index if first is None else first
            while len(self._unacked) >= WINDOW and self._final is None:
                acked.clear()
                await acked.wait()
            if self._target.realtime:
                delay = started + (index - first) * CHUNK_SECONDS - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self._outbox.popleft()
            self._unacked.append((index, chunk, time.monotonic()))
            await ws.send_bytes(chunk)
            sent = index * CHUNK_SECONDS + len(chunk) / self._audio.bytes_per_second
            self._counts.sent_seconds = max(self._counts.sent_seconds, sent)

    async def _read_acks(self, ws: aiohttp.ClientWebSocketResponse, acked: asyncio.Event) -> None:
        while True:
            message = await self._receive(ws)
            if isinstance(message, ChunkFailed):  # 1011 follows: a resume sends it again
                raise Reconnect(f"the server could not store chunk {message.chunk_count + 1}")
            if isinstance(message, SessionFailed):  # the recording ended (undecodable audio)
                self._final = message
                acked.set()
                return
            if not isinstance(message, ChunkAck):
                raise ClientError(f"unexpected message: {message.to_wire()}")
            if self._unacked:
                _, _, sent_at = self._unacked.popleft()
                self._counts.latencies.append(time.monotonic() - sent_at)
            self._counts.acked = message.chunk_count
            acked.set()

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> ClientMessage:
        """The next JSON message. A close (or an error message and its close) is a Reconnect when
        the protocol says to resume, else a ClientError with the server's reason and code."""
        try:
            async with asyncio.timeout(ANSWER_SECONDS):
                message = await ws.receive()
                if message.type == aiohttp.WSMsgType.TEXT:
                    parsed = _parse(message.data)
                    if not isinstance(parsed, ErrorReply):
                        return parsed
                    await ws.receive()  # the close that follows it
                    said = f"{parsed.error} (close {ws.close_code})"
                    if parsed.error in RESUMABLE_ERRORS:
                        raise Reconnect(said)
                    raise ClientError(said)
        except TimeoutError:
            raise Reconnect(f"no answer from the server within {ANSWER_SECONDS:g} s") from None
        if ws.close_code in RESUMABLE_CLOSES:
            raise Reconnect(f"the socket closed (close {ws.close_code})")
        raise ClientError(f"the server closed the socket (close {ws.close_code})")


def _info_url(socket_url: str, session_id: str) -> str | None:
    """`GET /api/audio/sessions/{id}` beside the session socket `…/api/ws/audio`, if it is one."""
    parts = urlsplit(socket_url)
    if not parts.path.rstrip("/").endswith(SOCKET_PATH) or parts.scheme not in ("ws", "wss"):
        return None
    path = parts.path.rstrip("/").removesuffix(SOCKET_PATH) + f"/api/audio/sessions/{session_id}"
    return urlunsplit(("http" if parts.scheme == "ws" else "https", parts.netloc, path, "", ""))


def _cause(failed: ExceptionGroup) -> Exception:
    """What ended a conversation: the server's error, else a resume, else the first failure (a
    send to a socket that was closing is a resume too)."""
    errors = failed.exceptions
    for kind in (ClientError, Reconnect):
        for error in errors:
            if isinstance(error, kind):
                return error
    for error in errors:
        if isinstance(error, ConnectionError | aiohttp.ClientConnectionError):
            return Reconnect(f"the connection dropped: {error}")
    first: Exception = errors[0]
    return first


_MESSAGES: Final[dict[str, type[ClientMessage]]] = {
    model.model_fields["message"].default: model
    for model in (
        SessionCreated,
        SessionResumed,
        ChunkAck,
        ChunkFailed,
        SessionClosed,
        SessionFailed,
        CloseTimedOut,
    )
}


def _parse(text: str) -> ClientMessage:
    """A server message: one of the session protocol's, or an ErrorReply."""
    try:
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise MessageError("not a JSON object")
        if "error" in data and "message" not in data:
            return ErrorReply.parse({"error": data["error"]})
        model = _MESSAGES.get(str(data.get("message")))
        if model is None:
            raise MessageError("not a session protocol message")
        return model.parse(data, extra="ignore")
    except (ValueError, MessageError) as exc:
        raise ClientError(f"a message the client cannot read ({exc}): {text[:200]}") from None
