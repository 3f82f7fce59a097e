"""Every record on the bus: the session records on the audio topics (`start` → `chunk`… → `stop`,
or `error`) and the events topic (`finalized`), and the egress record (`EgressAudio`); see
docs/architecture.md, the bus.

One record = one small frozen class with `to_message()` / `from_message()`. Every record is keyed
by session id; chunk audio is the raw record value; metadata travels in short ASCII headers;
`start`, `stop`, `error` and `finalized` carry a compact JSON value.
"""

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Final, Self

from voxbus.common.constants import Header, RecordType

Headers = tuple[tuple[str, bytes], ...]

CODECS: Final = frozenset({"pcm_s16le", "wav", "opus", "ogg", "webm", "mp3", "flac", "aac", "mulaw", "alaw"})


class RecordError(ValueError):
    """A bus record that is not a valid voxbus record; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BusMessage:
    """What a producer sends: key, value and headers, nothing backend-specific."""

    key: bytes
    value: bytes
    headers: Headers


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioFormat:
    """Codec, sample rate and channel count of a stream."""

    codec: str
    rate: int
    channels: int

    def __post_init__(self) -> None:
        if self.codec not in CODECS:
            raise RecordError(f"unknown codec {self.codec!r}")
        if not 1000 <= self.rate <= 384_000:
            raise RecordError(f"sample rate out of range: {self.rate}")
        if self.channels not in (1, 2):
            raise RecordError(f"channels must be 1 or 2, got {self.channels}")

    def to_json(self) -> dict[str, Any]:
        return {"codec": self.codec, "rate": self.rate, "ch": self.channels}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(codec=str(data["codec"]), rate=int(data["rate"]), channels=int(data["ch"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class EchoSettings:
    """Whether a session's audio comes back to the client, and after how long."""

    enabled: bool = False
    delay_ms: int = 0

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise RecordError(f"echo delay must be >= 0 ms, got {self.delay_ms}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStart:
    """Opens (or, with `resume`, re-opens) a session's stream."""

    _type: ClassVar[RecordType] = RecordType.START
    session_id: str
    seq: int
    ts_ns: int
    format: AudioFormat
    protocol: str
    user_id: str = ""
    echo: EchoSettings = field(default_factory=EchoSettings)
    resume: bool = False

    def to_message(self) -> BusMessage:
        body = {
            "format": self.format.to_json(),
            "protocol": self.protocol,
            "user_id": self.user_id,
            "echo": {"enabled": self.echo.enabled, "delay_ms": self.echo.delay_ms},
            "resume": self.resume,
        }
        return _message(self._type, self.session_id, self.seq, self.ts_ns, _dump(body))

    @classmethod
    def from_message(cls, key: bytes, value: bytes, headers: Headers) -> Self:
        meta = _Meta.parse(cls._type, key, headers)
        body = _load(value)
        try:
            echo = body.get("echo") or {}
            return cls(
                session_id=meta.session_id,
                seq=meta.seq,
                ts_ns=meta.ts_ns,
                format=AudioFormat.from_json(body["format"]),
                protocol=str(body["protocol"]),
                user_id=str(body.get("user_id", "")),
                echo=EchoSettings(
                    enabled=bool(echo.get("enabled", False)),
                    delay_ms=int(echo.get("delay_ms", 0)),
                ),
                resume=bool(body.get("resume", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"malformed start record: {exc!r}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioChunk:
    """One piece of a session's audio; `audio` is the record value, untouched.

    On the PCM topic `pos` is the frame offset of the chunk's first sample in the session's
    output: the writer deduplicates replays by it, whatever the chunking of a replay. On the raw
    topic `number` is the chunk's number in the session, as the client counts its chunks: the
    transcoder takes chunk n only after chunk n-1, so a chunk a client sends again after a resume
    is recorded once, and nothing lands behind a chunk the bus refused.
    """

    _type: ClassVar[RecordType] = RecordType.CHUNK
    session_id: str
    seq: int
    ts_ns: int
    format: AudioFormat
    audio: bytes
    pos: int | None = None
    number: int | None = None

    def to_message(self) -> BusMessage:
        encoder = ChunkEncoder(self.session_id, self.format)
        return encoder.message(self.seq, self.ts_ns, self.audio, pos=self.pos, number=self.number)

    @classmethod
    def from_message(cls, key: bytes, value: bytes, headers: Headers) -> Self:
        meta = _Meta.parse(cls._type, key, headers)
        fields = dict(headers)
        try:
            audio_format = AudioFormat(
                codec=fields[Header.CODEC].decode("ascii"),
                rate=int(fields[Header.RATE]),
                channels=int(fields[Header.CHANNELS]),
            )
            position, number = fields.get(Header.POSITION), fields.get(Header.NUMBER)
            pos = int(position) if position is not None else None
            chunk_number = int(number) if number is not None else None
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise RecordError(f"malformed chunk headers: {exc!r}") from exc
        return cls(
            session_id=meta.session_id,
            seq=meta.seq,
            ts_ns=meta.ts_ns,
            format=audio_format,
            audio=value,
            pos=pos,
            number=chunk_number,
        )


def chunk_order(headers: Sequence[tuple[str, bytes]]) -> tuple[int, int]:
    """A chunk's seq and ingest time (ns) from its headers alone, nothing else checked: for a
    consumer that only times chunks. (The echo service reads every chunk of every session; a
    whole `AudioChunk.from_message` costs over ten times as much.) `RecordError` if either is
    missing or not a number."""
    seq = ts_ns = None
    try:
        for name, value in headers:
            if name == Header.SEQ:
                seq = int(value)
            elif name == Header.INGEST_TS:
                ts_ns = int(value)
    except ValueError as exc:
        raise RecordError(f"malformed chunk headers: {exc}") from exc
    if seq is None or ts_ns is None:
        raise RecordError("chunk without a seq or an ingest time")
    return seq, ts_ns


class ChunkEncoder:
    """One session's chunk records as bus messages, with the headers that never change within a
    session encoded once: a chunk is then a few µs to encode, not ten (ingest does it 50 times a
    second per stream)."""

    __slots__ = ("_format", "_head", "_key")

    def __init__(self, session_id: str, audio_format: AudioFormat) -> None:
        self._key = session_id.encode("ascii")
        self._head = _identity_headers(RecordType.CHUNK, self._key)
        self._format = (
            (Header.CODEC, audio_format.codec.encode("ascii")),
            (Header.RATE, b"%d" % audio_format.rate),
            (Header.CHANNELS, b"%d" % audio_format.channels),
        )

    def message(
        self, seq: int, ts_ns: int, audio: bytes, *, pos: int | None = None, number: int | None = None
    ) -> BusMessage:
        """The message `AudioChunk.to_message()` makes of these fields."""
        headers: Headers = (*self._head, *_order_headers(seq, ts_ns), *self._format)
        if pos is not None:
            headers = (*headers, (Header.POSITION, b"%d" % pos))
        if number is not None:
            headers = (*headers, (Header.NUMBER, b"%d" % number))
        return BusMessage(key=self._key, value=audio, headers=headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class _ReasonRecord:
    """A record whose JSON value is just `{"reason": …}`."""

    _type: ClassVar[RecordType]
    session_id: str
    seq: int
    ts_ns: int
    reason: str

    def to_message(self) -> BusMessage:
        body = _dump({"reason": self.reason})
        return _message(self._type, self.session_id, self.seq, self.ts_ns, body)

    @classmethod
    def from_message(cls, key: bytes, value: bytes, headers: Headers) -> Self:
        meta = _Meta.parse(cls._type, key, headers)
        return cls(
            session_id=meta.session_id,
            seq=meta.seq,
            ts_ns=meta.ts_ns,
            reason=str(_load(value).get("reason", "")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStop(_ReasonRecord):
    """Ends a session's stream gracefully; `reason` says why (client close, idle, …)."""

    _type: ClassVar[RecordType] = RecordType.STOP


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionError(_ReasonRecord):
    """A session could not be processed (undecodable audio, …); `reason` is for humans."""

    _type: ClassVar[RecordType] = RecordType.ERROR


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionFinalized:
    """Event: the writer has completed a session's files (published on the events topic)."""

    _type: ClassVar[RecordType] = RecordType.FINALIZED
    session_id: str
    seq: int
    ts_ns: int
    file_path: str
    duration_seconds: float
    segments: tuple[str, ...] = ()

    def to_message(self) -> BusMessage:
        body = _dump(
            {
                "file_path": self.file_path,
                "duration_seconds": self.duration_seconds,
                "segments": list(self.segments),
            }
        )
        return _message(self._type, self.session_id, self.seq, self.ts_ns, body)

    @classmethod
    def from_message(cls, key: bytes, value: bytes, headers: Headers) -> Self:
        meta = _Meta.parse(cls._type, key, headers)
        body = _load(value)
        try:
            return cls(
                session_id=meta.session_id,
                seq=meta.seq,
                ts_ns=meta.ts_ns,
                file_path=str(body["file_path"]),
                duration_seconds=float(body["duration_seconds"]),
                segments=tuple(str(s) for s in body.get("segments", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"malformed finalized record: {exc!r}") from exc


class EgressKind(StrEnum):
    """What an egress record carries (its `k` header; absent: live audio)."""

    LIVE = ""  # an echo of the caller's audio
    PROMPT = "prompt"  # audio played to the caller (a greeting): live audio waits behind it
    CLEAR = "clear"  # no audio: drop what the socket has queued for the caller (barge-in)


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressAudio:
    """Audio for a client's socket, on the egress topic (docs/architecture.md, the egress topic):
    produced to the egress partition of the ingest pod that holds the session's socket (its
    `state.Route`), keyed by session id; the value is the audio, untouched, which the session's
    protocol adapter wraps for the wire.

    Headers, all but `t` optional: `ts`, the ingest time of the chunk it echoes; `seq`, that
    chunk's session seq (ingest delivers each seq of a session at most once, so an echo producer
    that crashed and sent some again is not heard twice); `due`, when ingest writes it to the
    socket (wall clock, ns; without it, at once); `k`, its `EgressKind` (telephony's prompts and
    clears; absent: live audio).

    Not a session record, and `decode` rejects it: the egress topic carries this record alone, so
    its `t` chooses nothing. It says `chunk`, without `sid`, codec, rate or channels (ingest needs
    none of them), because that is what the echo service has always produced, and records in
    flight during a rolling deploy must still parse. So a consumer decodes by topic: `decode` on
    the audio and events topics, `EgressAudio.from_message` on egress.
    """

    _type: ClassVar[RecordType] = RecordType.CHUNK
    session_id: str
    audio: bytes
    ts_ns: int | None = None
    seq: int | None = None
    due_ns: int | None = None
    kind: EgressKind = EgressKind.LIVE

    @property
    def due(self) -> float | None:
        """`due_ns` in seconds (wall clock, as `time.time()`); None: deliver at once."""
        return None if self.due_ns is None else self.due_ns / 1e9

    def to_message(self) -> BusMessage:
        return EgressEncoder(self.session_id).message(
            self.audio, ts_ns=self.ts_ns, seq=self.seq, due_ns=self.due_ns, kind=self.kind
        )

    @classmethod
    def from_message(cls, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Self:
        if not key:
            raise RecordError("egress record has no key (session id)")
        kind = ts_ns = seq = due_ns = None
        egress_kind = EgressKind.LIVE
        try:
            session_id = key.decode("ascii")
            for name, header in headers:
                if name == Header.TYPE:
                    kind = header
                elif name == Header.INGEST_TS:
                    ts_ns = int(header)
                elif name == Header.SEQ:
                    # empty: an echo of a chunk without a seq, from echo services before typed records
                    seq = int(header) if header else None
                elif name == Header.DUE:
                    due_ns = int(header)
                elif name == Header.KIND:
                    egress_kind = EgressKind(header.decode("ascii"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError(f"malformed egress record: {exc}") from exc
        if kind != _EGRESS_TYPE:
            raise RecordError(f"expected an egress record (t=chunk), got t={kind!r}")
        return cls(session_id=session_id, audio=value, ts_ns=ts_ns, seq=seq, due_ns=due_ns, kind=egress_kind)


class EgressEncoder:
    """One session's egress records as bus messages, its key encoded once (the echo service
    produces 50 a second per session): the message `EgressAudio.to_message()` makes, without
    building an `EgressAudio` first."""

    __slots__ = ("_head", "_key")

    def __init__(self, session_id: str) -> None:
        self._key = session_id.encode("ascii")
        self._head: Headers = ((Header.TYPE, _EGRESS_TYPE),)

    def message(
        self,
        audio: bytes,
        *,
        ts_ns: int | None = None,
        seq: int | None = None,
        due_ns: int | None = None,
        kind: EgressKind = EgressKind.LIVE,
    ) -> BusMessage:
        headers = self._head
        if ts_ns is not None:
            headers = (*headers, (Header.INGEST_TS, b"%d" % ts_ns))
        if seq is not None:
            headers = (*headers, (Header.SEQ, b"%d" % seq))
        if due_ns is not None:
            headers = (*headers, (Header.DUE, b"%d" % due_ns))
        if kind:
            headers = (*headers, (Header.KIND, kind.value.encode("ascii")))
        return BusMessage(key=self._key, value=audio, headers=headers)


_EGRESS_TYPE: Final = EgressAudio._type.value.encode("ascii")

SessionRecord = SessionStart | AudioChunk | SessionStop | SessionError | SessionFinalized

_DECODERS: Final[dict[str, type[SessionRecord]]] = {
    RecordType.START: SessionStart,
    RecordType.CHUNK: AudioChunk,
    RecordType.STOP: SessionStop,
    RecordType.ERROR: SessionError,
    RecordType.FINALIZED: SessionFinalized,
}


def decode(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> SessionRecord:
    """Decode any session record (audio and events topics) from its key, value and headers;
    `RecordError` if it is not one. Egress records are not session records: `EgressAudio`."""
    header_tuple = tuple(headers)
    kind = record_type(header_tuple)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise RecordError(f"unknown record type {kind!r}")
    if key is None:
        raise RecordError("record has no key (session id)")
    return decoder.from_message(key, value or b"", header_tuple)


def record_type(headers: Sequence[tuple[str, bytes]]) -> str:
    """A record's `t` header alone ('' if it has none): for a consumer that dispatches on it and
    decodes only some records."""
    for name, value in headers:
        if name == Header.TYPE:
            return value.decode("ascii", "replace")
    return ""


def new_session_id() -> str:
    """A fresh session id (UUID4, canonical text form)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class _Meta:
    session_id: str
    seq: int
    ts_ns: int

    @classmethod
    def parse(cls, expected: RecordType, key: bytes, headers: Headers) -> "_Meta":
        fields = dict(headers)
        record_type = fields.get(Header.TYPE, b"").decode("ascii", "replace")
        if record_type != expected:
            raise RecordError(f"expected a {expected} record, got {record_type!r}")
        try:
            session_id = fields[Header.SESSION_ID].decode("ascii")
            seq = int(fields[Header.SEQ])
            ts_ns = int(fields[Header.INGEST_TS])
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise RecordError(f"malformed record headers: {exc!r}") from exc
        if key.decode("ascii", "replace") != session_id:
            raise RecordError(f"record key {key!r} does not match session id {session_id!r}")
        return cls(session_id, seq, ts_ns)


def _meta_headers(record_type: RecordType, session_id: str, seq: int, ts_ns: int) -> Headers:
    return (*_identity_headers(record_type, session_id.encode("ascii")), *_order_headers(seq, ts_ns))


def _identity_headers(record_type: RecordType, key: bytes) -> Headers:
    """The first two headers of every record: what it is and whose."""
    return ((Header.TYPE, record_type.value.encode("ascii")), (Header.SESSION_ID, key))


def _order_headers(seq: int, ts_ns: int) -> Headers:
    """The next two: where it stands in its session, and when ingest took it."""
    return ((Header.SEQ, b"%d" % seq), (Header.INGEST_TS, b"%d" % ts_ns))


def _message(record_type: RecordType, session_id: str, seq: int, ts_ns: int, value: bytes) -> BusMessage:
    return BusMessage(
        key=session_id.encode("ascii"),
        value=value,
        headers=_meta_headers(record_type, session_id, seq, ts_ns),
    )


def _dump(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _load(value: bytes) -> dict[str, Any]:
    try:
        body = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError(f"record value is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RecordError("record value is not a JSON object")
    return body
