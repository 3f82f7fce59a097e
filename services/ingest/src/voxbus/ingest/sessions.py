"""Sessions as ingest keeps them (docs/architecture.md, the state store): the hash
(`SessionHashes`), with ingest's part of it (creating, attaching, counting, closing), the indexes
it lists them by, and the cluster-wide slots; and a session as the API shows it."""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from voxbus.common.constants import Key, SessionStatus
from voxbus.common.http_bodies import SessionInfo
from voxbus.common.listing import Page, newest_first
from voxbus.common.records import AudioFormat, EchoSettings
from voxbus.common.session_state import SessionHashes, SessionState, SessionUpdate
from voxbus.common.store.base import StateStore, StoreBatch

# docs/api.md's `format` names → the codec names records carry
CODEC_OF_FORMAT = {"pcm": "pcm_s16le"}
FORMAT_OF_CODEC = {"pcm_s16le": "pcm"}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSpec:
    """What a new session is: who sends it, in which format, over which protocol."""

    user_id: str
    protocol: str
    format: AudioFormat
    echo: EchoSettings
    record: bool = True  # False: the audio is echoed but not kept (a call in `echo` mode)
    tenant: str = ""  # the tenant of the key that opened it ("" the operator's)


class SessionRegistry(SessionHashes):
    def __init__(self, store: StateStore, *, pod: str) -> None:
        super().__init__(store)
        self._pod = pod

    async def create(self, session_id: str, spec: SessionSpec) -> float:
        """Write a new session's record and index it; when it was created."""
        now = time.time()
        batch = self._store.batch()
        created = SessionUpdate.created(
            user_id=spec.user_id,
            protocol=spec.protocol,
            format_name=FORMAT_OF_CODEC.get(spec.format.codec, spec.format.codec),
            audio_format=spec.format,
            echo=spec.echo,
            pod=self._pod,
            now=now,
            record=spec.record,
            tenant=spec.tenant,
        )
        self.queue_update(batch, session_id, created)
        batch.zadd(Key.SESSIONS_ALL, {session_id: now})
        batch.zadd(Key.SESSIONS_BY_USER + spec.user_id, {session_id: now})
        if spec.tenant:
            batch.zadd(Key.SESSIONS_BY_TENANT + spec.tenant, {session_id: now})
            batch.zadd(_tenant_user_index(spec.tenant, spec.user_id), {session_id: now})
        await batch.execute()
        return now

    def attach(self, batch: StoreBatch, session_id: str) -> int:
        """A socket takes the session. Returns where in `batch`'s results its new epoch will be
        (the high bits of every record seq the socket sends)."""
        self.queue_update(batch, session_id, SessionUpdate(pod=self._pod))
        return self.queue_new_epoch(batch, session_id)

    def add_progress(self, batch: StoreBatch, session_id: str, chunks: int, received: int) -> None:
        self.queue_received(batch, session_id, chunks=chunks, size=received)

    async def mark_closing(self, session_id: str, reason: str) -> None:
        """active → closing; a session the pipeline already ended (completed, error) keeps its
        status. One compare-and-set: a failure the writer records meanwhile is never overwritten."""
        batch = self._store.batch()
        closing = SessionUpdate(status=SessionStatus.CLOSING, close_reason=reason, updated_at=time.time())
        self.queue_update_if(batch, session_id, SessionStatus.ACTIVE, closing)
        batch.zrem(Key.REAP_AT, session_id)
        batch.zrem(Key.SESSION_SLOTS, session_id)
        await batch.execute()

    async def list(
        self, *, tenant: str | None, user_id: str | None, status: str | None, page: Page
    ) -> tuple[list[SessionInfo], float | None]:
        """Newest first, a page at a time (`listing.newest_first`); only `tenant`'s, unless None
        (the operator sees every tenant's)."""
        if tenant is None:
            index = Key.SESSIONS_BY_USER + user_id if user_id else Key.SESSIONS_ALL
        else:
            index = _tenant_user_index(tenant, user_id) if user_id else Key.SESSIONS_BY_TENANT + tenant

        async def read(session_ids: Sequence[str]) -> list[SessionInfo | None]:
            states = await self.read_many(list(session_ids))
            return [
                session_info(state) if state is not None and (not status or state.status == status) else None
                for state in states
            ]

        return await newest_first(self._store, index, page, read)


def _tenant_user_index(tenant: str, user_id: str) -> str:
    # a tenant name has no "/": no tenant's index is another's
    return f"{Key.SESSIONS_BY_TENANT}{tenant}/{user_id}"


def session_info(state: SessionState) -> SessionInfo:
    """A session as the API shows it (0 for a rate or channel count not recorded)."""
    return SessionInfo(
        session_id=state.session_id,
        user_id=state.user_id,
        tenant=state.tenant,
        status=state.status,
        protocol=state.protocol,
        sample_rate=state.sample_rate or 0,
        channels=state.channels or 0,
        format=state.format,
        created_at=state.created_at,
        updated_at=state.updated_at,
        total_chunks=state.chunk_count,
        bytes_received=state.bytes_received,
        duration_seconds=state.duration_seconds,
        file_path=state.file_path,
        segments=list(state.segments),
        close_reason=state.close_reason,
        error=state.error,
    )


def canonical_session_id(text: str) -> str | None:
    """A session id as a client may spell it (any letter case) in its one stored form, lowercase
    8-4-4-4-12; None when `text` is no such UUID."""
    try:
        canonical = str(uuid.UUID(text))
    except ValueError:
        return None
    return canonical if canonical == text.lower() else None
