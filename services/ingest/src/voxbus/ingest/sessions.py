"""Session records in the state store (DESIGN §5): the hash, its indexes, and the cluster-wide slots."""

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from voxbus.common.constants import Key, SessionField, SessionStatus
from voxbus.common.records import AudioFormat, EchoSettings, new_session_id
from voxbus.common.store.base import ScoreRange, StateStore, StoreBatch

MAX_EXAMINED = 1000  # sessions one list request looks at, at most

# API.md's `format` names → the codec names records carry
CODEC_OF_FORMAT = {"pcm": "pcm_s16le"}
FORMAT_OF_CODEC = {"pcm_s16le": "pcm"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSpec:
    """What a new session is: who sends it, in which format, over which protocol."""

    user_id: str
    protocol: str
    format: AudioFormat
    echo: EchoSettings


class SessionRegistry:
    def __init__(self, store: StateStore, *, pod: str) -> None:
        self._store, self._pod = store, pod

    async def create(self, spec: SessionSpec) -> str:
        session_id = new_session_id()
        now = time.time()
        batch = self._store.batch()
        batch.hset(
            Key.SESSION + session_id,
            {
                SessionField.STATUS: SessionStatus.ACTIVE,
                SessionField.USER_ID: spec.user_id,
                SessionField.PROTOCOL: spec.protocol,
                SessionField.FORMAT: FORMAT_OF_CODEC.get(spec.format.codec, spec.format.codec),
                SessionField.CODEC: spec.format.codec,
                SessionField.SAMPLE_RATE: spec.format.rate,
                SessionField.CHANNELS: spec.format.channels,
                SessionField.ECHO: int(spec.echo.enabled),
                SessionField.DELAY_MS: spec.echo.delay_ms,
                SessionField.CREATED_AT: now,
                SessionField.UPDATED_AT: now,
                SessionField.CHUNK_COUNT: 0,
                SessionField.BYTES_RECEIVED: 0,
                SessionField.POD: self._pod,
            },
        )
        batch.zadd(Key.SESSIONS_ALL, {session_id: now})
        batch.zadd(Key.SESSIONS_BY_USER + spec.user_id, {session_id: now})
        await batch.execute()
        return session_id

    async def fields(self, session_id: str) -> dict[str, str]:
        return await self._store.hgetall(Key.SESSION + session_id)

    def attach(self, batch: StoreBatch, session_id: str) -> int:
        """A socket takes the session. Returns where in `batch`'s results its new epoch will be
        (the high bits of every record seq the socket sends)."""
        batch.hset(Key.SESSION + session_id, {SessionField.POD: self._pod})
        return batch.hincrby(Key.SESSION + session_id, SessionField.EPOCH)

    def add_progress(self, batch: StoreBatch, session_id: str, chunks: int, received: int) -> None:
        key = Key.SESSION + session_id
        batch.hincrby(key, SessionField.CHUNK_COUNT, chunks)
        batch.hincrby(key, SessionField.BYTES_RECEIVED, received)

    async def mark_closing(self, session_id: str, reason: str) -> None:
        """active → closing; a session the pipeline already ended (completed, error) keeps its
        status. One compare-and-set: a failure the writer records meanwhile is never overwritten."""
        batch = self._store.batch()
        batch.hset_if_equal(
            Key.SESSION + session_id,
            SessionField.STATUS,
            SessionStatus.ACTIVE,
            {
                SessionField.STATUS: SessionStatus.CLOSING,
                SessionField.CLOSE_REASON: reason,
                SessionField.UPDATED_AT: time.time(),
            },
        )
        batch.zrem(Key.REAP_AT, session_id)
        batch.zrem(Key.SESSION_SLOTS, session_id)
        await batch.execute()

    async def list(
        self, *, user_id: str | None, status: str | None, limit: int, cursor: float | None
    ) -> tuple[list[dict[str, Any]], float | None]:
        """Newest first; `cursor` is the created_at of the last session the previous page looked
        at. A request looks at no more than `MAX_EXAMINED` sessions (a status filter that matches
        few would otherwise read every session ever made, holding up every socket of the pod):
        a page may then hold fewer than `limit`, and `next_cursor` goes on from where it stopped.
        None: nothing is left."""
        index = Key.SESSIONS_BY_USER + user_id if user_id else Key.SESSIONS_ALL
        bound = ScoreRange() if cursor is None else ScoreRange(max=cursor, max_exclusive=True)
        items: list[dict[str, Any]] = []
        examined, last_created, offset = 0, cursor, 0
        while len(items) < limit and examined < MAX_EXAMINED:
            size = min(max(limit, 20), MAX_EXAMINED - examined)
            page = await self._store.zrange(index, bound, descending=True, offset=offset, limit=size)
            if not page:
                return items, None
            offset += len(page)
            batch = self._store.batch()
            for session_id, _ in page:
                batch.hgetall(Key.SESSION + session_id)
            for (session_id, created), fields in zip(page, await batch.execute(), strict=True):
                examined, last_created = examined + 1, created
                if fields and (not status or fields.get(SessionField.STATUS) == status):
                    items.append(public_info(session_id, fields))
                    if len(items) == limit:
                        break
        return items, last_created


def public_info(session_id: str, fields: dict[str, str]) -> dict[str, Any]:
    """A session as API.md shows it."""
    duration = fields.get(SessionField.DURATION_SECONDS)
    return {
        "session_id": session_id,
        "user_id": fields.get(SessionField.USER_ID, ""),
        "status": fields.get(SessionField.STATUS, SessionStatus.ACTIVE),
        "protocol": fields.get(SessionField.PROTOCOL, ""),
        "sample_rate": int(fields.get(SessionField.SAMPLE_RATE, 0)),
        "channels": int(fields.get(SessionField.CHANNELS, 0)),
        "format": fields.get(SessionField.FORMAT, ""),
        "created_at": float(fields.get(SessionField.CREATED_AT, 0.0)),
        "updated_at": float(fields.get(SessionField.UPDATED_AT, 0.0)),
        "total_chunks": int(fields.get(SessionField.CHUNK_COUNT, 0)),
        "bytes_received": int(fields.get(SessionField.BYTES_RECEIVED, 0)),
        "duration_seconds": float(duration) if duration else 0.0,
        "file_path": fields.get(SessionField.FILE_PATH),
        "segments": json.loads(fields.get(SessionField.SEGMENTS, "[]")),
        "close_reason": fields.get(SessionField.CLOSE_REASON),
        "error": fields.get(SessionField.ERROR),
    }


def canonical_session_id(text: str) -> str | None:
    """A session id as a client may spell it (any letter case) in its one stored form, lowercase
    8-4-4-4-12; None when `text` is no such UUID."""
    try:
        canonical = str(uuid.UUID(text))
    except ValueError:
        return None
    return canonical if canonical == text.lower() else None
