"""The session protocol (`/api/ws/audio`, `/api/ws/audio/{session_id}`), exactly as API.md says."""

import asyncio
import contextlib
import logging
import time
from typing import Any

from aiohttp import web

from voxbus.common.constants import SAMPLE_RATES, Key, SessionStatus
from voxbus.common.records import AudioFormat, EchoSettings
from voxbus.common.state import SessionControl, SessionNotice
from voxbus.ingest import metrics
from voxbus.ingest.connection import Connection, SessionRefused
from voxbus.ingest.finishing import FinishTimeout
from voxbus.ingest.protocols.base import Adapter
from voxbus.ingest.protocols.text import InvalidJson, parse_json
from voxbus.ingest.sessions import CODEC_OF_FORMAT, SessionSpec, canonical_session_id

log = logging.getLogger(__name__)

FORMATS = ["wav", "mp3", "flac", "aac", "pcm", "opus", "ogg", "webm"]
CHANNELS = [1, 2]
# the chunk ack as json.dumps would write it; a session id is a UUID, so nothing to escape
_ACK = (
    '{"message": "Chunk processed successfully", "session_id": "%s", "chunk_count": %d, "status": "active"}'
)


class SessionAdapter(Adapter):
    protocol = "session"

    def __init__(self, request: web.Request) -> None:
        super().__init__(request)
        self._control: asyncio.Task[None] | None = None

    async def on_open(self, conn: Connection) -> bool:
        given = self.request.match_info.get("session_id")
        if given is None:
            session_id = await conn.open(self._spec(conn))
            greeting = "Audio session created"
        else:
            resumed = canonical_session_id(given)
            if resumed is None:
                raise SessionRefused({"error": "Session not found", "session_id": given}, 1008)
            session_id = resumed
            await conn.resume(session_id)
            greeting = "Audio session resumed"
        await conn.send_json(
            {
                "message": greeting,
                "session_id": session_id,
                "chunk_count": conn.chunk_count,
                "status": "active",
            }
        )
        self._control = asyncio.create_task(
            self._close_requests(conn, session_id), name=f"control-{session_id}"
        )
        return True

    def _spec(self, conn: Connection) -> SessionSpec:
        settings, query = conn.ctx.settings, self.request.query
        rate = _int(query.get("sample_rate"), settings.default_sample_rate)
        if rate not in SAMPLE_RATES:
            raise SessionRefused({"error": "Invalid sample rate", "valid_values": list(SAMPLE_RATES)}, 1008)
        channels = _int(query.get("channels"), settings.default_channels)
        if channels not in CHANNELS:
            raise SessionRefused({"error": "Invalid channels", "valid_values": CHANNELS}, 1008)
        audio_format = query.get("format", settings.default_format)
        if audio_format not in FORMATS:
            raise SessionRefused({"error": "Invalid format", "valid_values": FORMATS}, 1008)
        echo = query.get("echo", "false").lower()
        if echo not in ("true", "false", "1", "0"):
            raise SessionRefused({"error": "Invalid echo", "valid_values": ["true", "false"]}, 1008)
        delay_ms = _int(query.get("delay_ms"), 0)
        if delay_ms is None or not 0 <= delay_ms <= 60_000:
            raise SessionRefused({"error": "Invalid delay_ms", "valid_range": [0, 60_000]}, 1008)
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
            await conn.send_json(_failed_chunk(conn))
            return

        async def acknowledge(ok: bool) -> None:
            # chunk_count: the chunks the recording holds, this one included if it is durable
            metrics.ACK_SECONDS.observe(time.perf_counter() - arrived)
            if ok:  # the hot path: one ack per chunk, formatted without json.dumps
                await conn.send_text(_ACK % (conn.session_id, conn.chunk_count))
            else:
                await conn.send_json(_failed_chunk(conn))

        await conn.audio(data, acknowledge)

    async def on_text(self, conn: Connection, text: str) -> None:
        try:
            message = parse_json(text)
        except InvalidJson:
            await conn.send_json({"error": "Invalid JSON format"})
            return
        if (
            isinstance(message, dict)
            and message.get("type") == "control"
            and message.get("action") == "close_session"
        ):
            await self._close(conn, "client")
            return
        await conn.send_json({"error": "Unknown message type", "received": message})

    async def on_disconnect(self, conn: Connection) -> None:
        await self._stop_control()

    def egress(self, audio: bytes) -> list[str | bytes]:
        return [audio]

    async def _close(self, conn: Connection, reason: str) -> None:
        if conn.finished:  # closing already (the client's close and the pipeline's end crossed)
            return
        await self._stop_control()
        try:
            info = await conn.finish(reason, wait=True)
        except FinishTimeout as exc:
            await conn.send_json(
                {
                    "message": "Session close timed out",
                    "session_id": conn.session_id,
                    "chunk_count": conn.chunk_count,
                    "status": "error",
                    "error": str(exc),
                }
            )
            await conn.close(1011, "close timed out")
            return
        if info is None:
            return
        reply = {
            "message": "Session closed successfully",
            "session_id": conn.session_id,
            "chunk_count": conn.chunk_count,
            "status": info["status"],
            "file_path": info["file_path"],
            "duration_seconds": info["duration_seconds"],
        }
        if info["status"] == SessionStatus.ERROR:
            # the file holds what was decoded before the failure
            reply["message"] = "Session failed"
            reply["error"] = info["error"] or info["close_reason"] or "the recording failed"
        await conn.send_json(reply)
        await conn.close(1000, "session closed")

    async def _close_requests(self, conn: Connection, session_id: str) -> None:
        """A `POST …/close` on any pod reaches the pod holding the socket through the store; so
        does the writer's word that the pipeline ended the session (undecodable audio, the
        maximum duration): the client is told at once, not acked on for audio that is dropped."""
        control, events = Key.SESSION_CONTROL + session_id, Key.SESSION_CHANNEL + session_id
        async with conn.ctx.store.subscribe(control, events) as subscription:
            while True:
                message = await subscription.get()
                if message is None:
                    continue
                if message.channel == control and message.data == SessionControl.CLOSE:
                    reason = "closed over HTTP"
                elif message.channel == events and message.data == SessionNotice.FINALIZED:
                    if conn.finished:  # this socket ended it (a timeout): it answers itself
                        return
                    reason = "failed"  # finalized while the socket streams: the pipeline ended it
                else:
                    continue
                self._control = None  # finishing now; _close must not cancel this task
                await self._close(conn, reason)
                return

    async def _stop_control(self) -> None:
        task, self._control = self._control, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _failed_chunk(conn: Connection) -> dict[str, Any]:
    return {
        "message": "Failed to process chunk",
        "session_id": conn.session_id,
        "chunk_count": conn.chunk_count,
        "status": "error",
    }


def _int(value: str | None, default: int) -> int | None:
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        return None
