"""The session protocol (`/api/ws/audio`, `/api/ws/audio/{session_id}`), exactly as docs/api.md says."""

import logging
import time
from typing import Any

from voxbus.common.client_messages import (
    MAX_DELAY_MS,
    SESSION_CHANNELS,
    SESSION_FORMATS,
    ChunkAck,
    ChunkFailed,
    CloseSession,
    CloseTimedOut,
    InvalidChannels,
    InvalidDelay,
    InvalidEcho,
    InvalidFormat,
    InvalidJsonFormat,
    InvalidSampleRate,
    MessageError,
    SessionClosed,
    SessionCreated,
    SessionFailed,
    SessionNotFound,
    SessionResumed,
    UnknownMessageType,
)
from voxbus.common.constants import SAMPLE_RATES, SessionStatus
from voxbus.common.records import AudioFormat, EchoSettings
from voxbus.ingest import metrics
from voxbus.ingest.finishing import FinishTimeout
from voxbus.ingest.protocols.base import Adapter, Connection, Opening, SessionRefused
from voxbus.ingest.protocols.text import InvalidJson, parse_json
from voxbus.ingest.sessions import CODEC_OF_FORMAT, SessionSpec, canonical_session_id

log = logging.getLogger(__name__)


class SessionAdapter(Adapter):
    protocol = "session"

    def __init__(self, opening: Opening) -> None:
        super().__init__(opening)
        self._session_id = ""  # once it is open or resumed

    async def on_open(self, conn: Connection) -> bool:
        given = self.opening.match_info.get("session_id")
        greeting: SessionCreated | SessionResumed
        if given is None:
            session_id = await conn.open(self._spec(conn))
            greeting = SessionCreated(session_id=session_id, chunk_count=conn.chunk_count)
        else:
            resumed = canonical_session_id(given)
            if resumed is None:
                raise SessionRefused(SessionNotFound(session_id=given), 1008)
            session_id = resumed
            await conn.resume(session_id)
            greeting = SessionResumed(session_id=session_id, chunk_count=conn.chunk_count)
        self._session_id = session_id
        await conn.send(greeting)
        return True

    def _spec(self, conn: Connection) -> SessionSpec:
        settings, query = conn.settings, self.opening.query
        rate = _int(query.get("sample_rate"), settings.default_sample_rate)
        if rate not in SAMPLE_RATES:
            raise SessionRefused(InvalidSampleRate(), 1008)
        channels = _int(query.get("channels"), settings.default_channels)
        if channels not in SESSION_CHANNELS:
            raise SessionRefused(InvalidChannels(), 1008)
        audio_format = query.get("format", settings.default_format)
        if audio_format not in SESSION_FORMATS:
            raise SessionRefused(InvalidFormat(), 1008)
        echo = query.get("echo", "false").lower()
        if echo not in ("true", "false", "1", "0"):
            raise SessionRefused(InvalidEcho(), 1008)
        delay_ms = _int(query.get("delay_ms"), 0)
        if delay_ms is None or not 0 <= delay_ms <= MAX_DELAY_MS:
            raise SessionRefused(InvalidDelay(), 1008)
        return SessionSpec(
            user_id=query.get("user_id", "anonymous"),
            protocol=self.protocol,
            format=AudioFormat(
                codec=CODEC_OF_FORMAT.get(audio_format, audio_format), rate=rate, channels=channels
            ),
            echo=EchoSettings(enabled=echo in ("true", "1"), delay_ms=delay_ms),
        )

    async def on_binary(self, conn: Connection, data: bytes) -> None:
        if conn.finished:
            return
        arrived = time.perf_counter()
        if not data:
            await conn.send(self._failed_chunk(conn))
            return

        async def acknowledge(ok: bool) -> None:
            # chunk_count: the chunks the recording holds, this one included if it is durable
            metrics.ACK_SECONDS.observe(time.perf_counter() - arrived)
            if ok:  # the hot path: one ack per chunk, formatted without building a model
                await conn.send_text(ChunkAck.wire_for(self._session_id, conn.chunk_count))
            else:
                await conn.send(self._failed_chunk(conn))

        await conn.audio(data, acknowledge)

    async def on_text(self, conn: Connection, text: str) -> None:
        try:
            message = parse_json(text)
        except InvalidJson:
            await conn.send(InvalidJsonFormat())
            return
        if _is_close_session(message):
            await self._close(conn, "client")
            return
        await conn.send(UnknownMessageType(received=message))

    async def on_close_request(self, conn: Connection, reason: str) -> None:
        """`POST …/close` on any pod, or the pipeline ended the session (undecodable audio, the
        maximum duration): the client gets the close reply at once, as for its own close, not
        acks for audio that is dropped."""
        await self._close(conn, reason)

    def egress(self, audio: bytes) -> list[str | bytes]:
        return [audio]

    def _failed_chunk(self, conn: Connection) -> ChunkFailed:
        return ChunkFailed(session_id=self._session_id, chunk_count=conn.chunk_count)

    async def _close(self, conn: Connection, reason: str) -> None:
        if conn.finished:  # closing already (the client's close and the pipeline's end crossed)
            return
        session_id = self._session_id
        await conn.ignore_close_requests()
        try:
            info = await conn.finish(reason, wait=True)
        except FinishTimeout as exc:
            await conn.send(
                CloseTimedOut(session_id=session_id, chunk_count=conn.chunk_count, error=str(exc))
            )
            await conn.close(1011, "close timed out")
            return
        if info is None:
            return
        reply: SessionClosed | SessionFailed
        if info["status"] == SessionStatus.ERROR:
            # the file holds what was decoded before the failure
            reply = SessionFailed(
                session_id=session_id,
                chunk_count=conn.chunk_count,
                file_path=info["file_path"],
                duration_seconds=info["duration_seconds"],
                error=info["error"] or info["close_reason"] or "the recording failed",
            )
        else:
            reply = SessionClosed(
                session_id=session_id,
                chunk_count=conn.chunk_count,
                file_path=info["file_path"],
                duration_seconds=info["duration_seconds"],
            )
        await conn.send(reply)
        await conn.close(1000, "session closed")


def _is_close_session(message: Any) -> bool:
    try:
        CloseSession.parse(message)
    except MessageError:
        return False
    return True


def _int(value: str | None, default: int) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return None
