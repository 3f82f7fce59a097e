"""The session hash (`Key.SESSION` + id, docs/architecture.md): one typed view of it, one typed
way to write it.

Every service reads a session as a `SessionState` (the defaults for fields not there, and the
parsing of numbers, flags and JSON, are here alone), and writes it with `SessionUpdate`s and the
operations of `SessionHashes`, so no service names a field. The fields are
`constants.SessionField`. In the store every value is text: integers in decimal, floats as
`repr` (as the store itself writes them), flags "1" / "0", lists and objects as JSON.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, Self

from voxbus.common.constants import Key, SessionField, SessionStatus
from voxbus.common.records import AudioFormat, EchoSettings
from voxbus.common.state import StateError
from voxbus.common.store.base import StateStore, StoreBatch

# what a session's audio is taken to be when its hash does not say (it always does once created)
DEFAULT_CODEC: Final = "pcm_s16le"
DEFAULT_RATE: Final = 16000
DEFAULT_CHANNELS: Final = 1

_ENDED: Final = frozenset({SessionStatus.COMPLETED, SessionStatus.ERROR})


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionState:
    """A session as its hash holds it; a field the hash lacks has the default given here.

    Who writes what: ingest creates it (`SessionUpdate.created`), sets `pod` and a new `epoch` at
    each attach, adds to the counters, and sets `closing` with its `close_reason`; the transcoder
    sets codec, rate and channels at each start, its replay progress (`transcoded_seq`,
    `resume_*`, `wav_format`), and `error` status with the reason when the audio is undecodable;
    the writer sets rate and channels when it opens the files, `written_frames` and the duration
    as they grow, and at the end the status, `finalized`, the file paths, `writer_pod` and the
    reasons. A missing status reads as `active`, as the API always showed it (ingest creates every
    session with one).
    """

    session_id: str  # not a field: the key's suffix
    status: SessionStatus = SessionStatus.ACTIVE
    user_id: str = ""
    tenant: str = ""  # the tenant of the key that opened it; "" the operator's
    protocol: str = ""
    format: str = ""  # the client's name for the format (`pcm`, `wav`, …): what the API shows
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    echo: bool = False
    delay_ms: int = 0
    record: bool = True  # False: the audio is not kept (a telephony call in `echo` mode)
    created_at: float = 0.0  # wall clock, s
    updated_at: float = 0.0
    chunk_count: int = 0  # client chunks durable on the bus (what the recording holds)
    bytes_received: int = 0
    duration_seconds: float = 0.0
    file_path: str | None = None  # under the audio storage path
    segments: tuple[str, ...] = ()
    pod: str | None = None  # the ingest pod that last took a socket for it
    close_reason: str | None = None
    error: str | None = None
    epoch: int = 0  # incremented at each attach: the high bits of the records' seq
    transcoded_seq: int | None = None  # highest seq whose output is durable
    resume_offset: int | None = None  # raw-topic offset where a fresh decoder can take over
    resume_frames: int = 0  # PCM frames produced before that offset
    resume_chunks: int | None = None  # client chunks taken before it (None: written before they were counted)
    wav_format: Mapping[str, Any] | None = None  # a WAV stream's header, for a decoder taking over
    written_frames: int | None = None  # frames the writer's files hold durably
    finalized: bool = False  # the writer completed the files
    writer_pod: str | None = None  # the writer that did (whose volume holds them)

    @property
    def ended(self) -> bool:
        """The pipeline is done with it (completed, or failed)."""
        return self.status in _ENDED

    def audio_format(self) -> AudioFormat:
        """The format the client streams in; `RecordError` if the hash holds an impossible one."""
        return AudioFormat(
            codec=self.codec or DEFAULT_CODEC,
            rate=self.sample_rate or DEFAULT_RATE,
            channels=self.channels or DEFAULT_CHANNELS,
        )

    def echo_settings(self) -> EchoSettings:
        return EchoSettings(enabled=self.echo, delay_ms=self.delay_ms)

    @classmethod
    def from_hash(cls, session_id: str, hash_fields: Mapping[str, str]) -> Self:
        """The session in `hash_fields` (an empty mapping gives every default); `StateError`,
        naming the field, for a value no voxbus service writes."""
        text = hash_fields.get
        return cls(
            session_id=session_id,
            status=_status(text(SessionField.STATUS)),
            user_id=text(SessionField.USER_ID, ""),
            tenant=text(SessionField.TENANT, ""),
            protocol=text(SessionField.PROTOCOL, ""),
            format=text(SessionField.FORMAT, ""),
            codec=text(SessionField.CODEC) or None,
            sample_rate=_int(hash_fields, SessionField.SAMPLE_RATE),
            channels=_int(hash_fields, SessionField.CHANNELS),
            echo=text(SessionField.ECHO) == "1",
            record=text(SessionField.RECORD) != "0",
            delay_ms=_int(hash_fields, SessionField.DELAY_MS) or 0,
            created_at=_float(hash_fields, SessionField.CREATED_AT) or 0.0,
            updated_at=_float(hash_fields, SessionField.UPDATED_AT) or 0.0,
            chunk_count=_int(hash_fields, SessionField.CHUNK_COUNT) or 0,
            bytes_received=_int(hash_fields, SessionField.BYTES_RECEIVED) or 0,
            duration_seconds=_float(hash_fields, SessionField.DURATION_SECONDS) or 0.0,
            file_path=text(SessionField.FILE_PATH),
            segments=_segments(text(SessionField.SEGMENTS)),
            pod=text(SessionField.POD),
            close_reason=text(SessionField.CLOSE_REASON),
            error=text(SessionField.ERROR),
            epoch=_int(hash_fields, SessionField.EPOCH) or 0,
            transcoded_seq=_int(hash_fields, SessionField.TRANSCODED_SEQ),
            resume_offset=_int(hash_fields, SessionField.RESUME_OFFSET),
            resume_frames=_int(hash_fields, SessionField.RESUME_FRAMES) or 0,
            resume_chunks=_int(hash_fields, SessionField.RESUME_CHUNKS),
            wav_format=_wav_format(text(SessionField.WAV_FORMAT)),
            written_frames=_int(hash_fields, SessionField.WRITTEN_FRAMES),
            finalized=text(SessionField.FINALIZED) == "1",
            writer_pod=text(SessionField.WRITER_POD),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionUpdate:
    """Fields to set in a session's hash: each one not None (the names are the fields').

    `SessionHashes.update` writes one; `created` is the whole hash of a new session.
    """

    status: SessionStatus | None = None
    user_id: str | None = None
    tenant: str | None = None
    protocol: str | None = None
    format: str | None = None
    codec: str | None = None
    sample_rate: int | None = None
    channels: int | None = None
    echo: bool | None = None
    record: bool | None = None
    delay_ms: int | None = None
    created_at: float | None = None
    updated_at: float | None = None
    chunk_count: int | None = None
    bytes_received: int | None = None
    duration_seconds: float | None = None
    file_path: str | None = None
    segments: tuple[str, ...] | None = None
    pod: str | None = None
    close_reason: str | None = None
    error: str | None = None
    transcoded_seq: int | None = None
    resume_offset: int | None = None
    resume_frames: int | None = None
    resume_chunks: int | None = None
    wav_format: Mapping[str, Any] | None = None
    written_frames: int | None = None
    finalized: bool | None = None
    writer_pod: str | None = None

    @classmethod
    def created(
        cls,
        *,
        user_id: str,
        protocol: str,
        format_name: str,
        audio_format: AudioFormat,
        echo: EchoSettings,
        pod: str,
        now: float,
        record: bool = True,
        tenant: str = "",
    ) -> Self:
        """A new session's hash: active, nothing received yet, held by `pod`."""
        return cls(
            status=SessionStatus.ACTIVE,
            user_id=user_id,
            tenant=tenant or None,  # the operator's sessions have none, as before tenants
            protocol=protocol,
            format=format_name,
            codec=audio_format.codec,
            sample_rate=audio_format.rate,
            channels=audio_format.channels,
            echo=echo.enabled,
            delay_ms=echo.delay_ms,
            record=record,
            created_at=now,
            updated_at=now,
            chunk_count=0,
            bytes_received=0,
            pod=pod,
        )

    def to_hash(self) -> dict[str, str]:
        """The fields this update sets, as the store holds them."""
        return {name: _text(value) for name in _UPDATE_FIELDS if (value := getattr(self, name)) is not None}


_UPDATE_FIELDS: Final = tuple(field.name for field in fields(SessionUpdate))


class SessionHashes:
    """The session hashes in a state store. Each write is one store command (direct) or one queued
    in a `StoreBatch` (`queue_…`); none is a transaction, each is atomic, as the store's are."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    async def read(self, session_id: str) -> SessionState | None:
        """The session; None if there is none."""
        hash_fields = await self._store.hgetall(Key.SESSION + session_id)
        return SessionState.from_hash(session_id, hash_fields) if hash_fields else None

    async def read_many(self, session_ids: Sequence[str]) -> list[SessionState | None]:
        """Sessions in one round trip, in order; None for each that does not exist."""
        batch = self._store.batch()
        for session_id in session_ids:
            batch.hgetall(Key.SESSION + session_id)
        return [
            SessionState.from_hash(session_id, hash_fields) if hash_fields else None
            for session_id, hash_fields in zip(session_ids, await batch.execute(), strict=True)
        ]

    async def finalized(self, session_id: str) -> bool:
        """Whether the writer completed the files: one field, for waiters that ask at every notice."""
        return await self._store.hget(Key.SESSION + session_id, SessionField.FINALIZED) == "1"

    async def update(self, session_id: str, update: SessionUpdate) -> None:
        """Set the fields `update` sets; an update that sets none writes nothing."""
        hash_fields = update.to_hash()
        if hash_fields:
            await self._store.hset(Key.SESSION + session_id, hash_fields)

    def queue_update(self, batch: StoreBatch, session_id: str, update: SessionUpdate) -> None:
        hash_fields = update.to_hash()
        if hash_fields:
            batch.hset(Key.SESSION + session_id, hash_fields)

    def queue_update_if(
        self, batch: StoreBatch, session_id: str, status: SessionStatus, update: SessionUpdate
    ) -> int:
        """Queue `update`, applied only if the session's status is `status` when it runs (a
        compare-and-set: a status another service wrote meanwhile is never overwritten). Its
        result in the batch: whether it was applied."""
        return batch.hset_if_equal(Key.SESSION + session_id, SessionField.STATUS, status, update.to_hash())

    async def new_epoch(self, session_id: str) -> int:
        """Increment the session's epoch; the new one."""
        return await self._store.hincrby(Key.SESSION + session_id, SessionField.EPOCH)

    def queue_new_epoch(self, batch: StoreBatch, session_id: str) -> int:
        """As `new_epoch`; where in the batch's results the new epoch will be."""
        return batch.hincrby(Key.SESSION + session_id, SessionField.EPOCH)

    def queue_received(self, batch: StoreBatch, session_id: str, *, chunks: int, size: int) -> None:
        """Count `chunks` more client chunks, `size` bytes in all, as durable."""
        key = Key.SESSION + session_id
        batch.hincrby(key, SessionField.CHUNK_COUNT, chunks)
        batch.hincrby(key, SessionField.BYTES_RECEIVED, size)


def _text(value: object) -> str:
    """A field value as the store holds it (the store's own encoding for str, int and float)."""
    if isinstance(value, str):  # a StrEnum's str() is its value
        return str(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, tuple):
        return json.dumps(list(value))
    if isinstance(value, Mapping):
        return json.dumps(dict(value))
    raise TypeError(f"no session hash encoding for {type(value).__name__}")


def _status(text: str | None) -> SessionStatus:
    if not text:
        return SessionStatus.ACTIVE
    try:
        return SessionStatus(text)
    except ValueError:
        raise StateError(f"{SessionField.STATUS}: unknown status {text!r}") from None


def _int(hash_fields: Mapping[str, str], name: str) -> int | None:
    text = hash_fields.get(name)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise StateError(f"{name}: not an integer: {text!r}") from None


def _float(hash_fields: Mapping[str, str], name: str) -> float | None:
    text = hash_fields.get(name)
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise StateError(f"{name}: not a number: {text!r}") from None


def _segments(text: str | None) -> tuple[str, ...]:
    if not text:
        return ()
    value = _json(SessionField.SEGMENTS, text)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StateError(f"{SessionField.SEGMENTS}: not a JSON list of paths: {text!r}")
    return tuple(value)


def _wav_format(text: str | None) -> dict[str, Any] | None:
    if not text:
        return None
    value = _json(SessionField.WAV_FORMAT, text)
    if not isinstance(value, dict):
        raise StateError(f"{SessionField.WAV_FORMAT}: not a JSON object: {text!r}")
    return value


def _json(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(f"{name}: not JSON: {exc}") from None
