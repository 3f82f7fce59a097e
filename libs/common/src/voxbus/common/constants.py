"""Names every service agrees on: topics, record headers, record types, state-store keys.

What travels under them is typed elsewhere: bus records in `records`, store values and pub/sub
messages in `state`, the session hash in `session_state`.

Changing a value here changes the wire and storage contract (docs/architecture.md: the bus, the state store).
"""

from enum import StrEnum
from typing import Final, Literal

SERVICE_NAMES: Final = ("ingest", "transcoder", "writer", "echo", "telephony")

# Sample rates a client may ask for (docs/api.md, session protocol).
SAMPLE_RATES: Final = (8000, 16000, 22050, 44100, 48000, 96000)

# What a tenant key may do (docs/security.md, Tenants): send audio, and read its sessions
KeyScope = Literal["stream", "read"]
KEY_SCOPES: Final[tuple[KeyScope, ...]] = ("stream", "read")


class Topic(StrEnum):
    """Topic suffixes; the full name is `Settings.topic_prefix` + suffix."""

    AUDIO_RAW = "audio.raw"
    AUDIO_PCM = "audio.pcm"
    EGRESS = "egress"
    EVENTS = "events"


class RecordType(StrEnum):
    """Value of the `t` header: what a bus record is."""

    START = "start"
    CHUNK = "chunk"
    STOP = "stop"
    ERROR = "error"
    FINALIZED = "finalized"
    # the events topic's call records (`call_events`), keyed by call id
    CALL_STATUS = "call-status"
    CALL_MEDIA = "call-media"
    CALL_DTMF = "call-dtmf"


class Header:
    """Record-header names: short ASCII, one per metadata field."""

    TYPE: Final = "t"
    SESSION_ID: Final = "sid"
    SEQ: Final = "seq"
    CODEC: Final = "codec"
    RATE: Final = "rate"
    CHANNELS: Final = "ch"
    INGEST_TS: Final = "ts"
    # on egress records: when ingest should write it to the socket (wall clock, ns)
    DUE: Final = "due"
    POSITION: Final = "pos"  # PCM chunks: frame offset of the first sample in the session
    NUMBER: Final = "n"  # raw chunks: the chunk's number in its session (1, 2, …, across resumes)
    KIND: Final = "k"  # egress records: "prompt" or "clear" (absent: live audio, an echo)


class Key:
    """State-store key prefixes; a key is the prefix followed by an id."""

    SESSION: Final = "voxbus:session:"  # + id: the session hash, `session_state.SessionState`
    SESSIONS_ALL: Final = "voxbus:sessions:all"
    SESSIONS_BY_USER: Final = "voxbus:sessions:user:"
    SESSIONS_BY_TENANT: Final = "voxbus:sessions:tenant:"  # + tenant; + tenant + "/" + user_id
    TENANT_KEY: Final = "voxbus:tenant-key:"  # + key id: a tenant key's hash (`tenant_keys.KeyRecord`)
    TENANT_KEYS: Final = "voxbus:tenant-keys"  # every key id, scored by when it was created
    ROUTE: Final = "voxbus:route:"  # + session id: a `state.Route`
    EGRESS_LEASE: Final = "voxbus:egress-lease:"
    POD: Final = "voxbus:pod:"  # + pod name: the live ingest process using that name
    SESSION_CHANNEL: Final = "voxbus:session-events:"
    SESSION_CONTROL: Final = "voxbus:session-control:"  # close requests to the pod holding the socket
    SESSION_SLOTS: Final = "voxbus:slots:sessions"  # cluster-wide concurrency leases
    CONNECTION_SLOTS: Final = "voxbus:slots:connections:"  # + session id
    REAP_AT: Final = "voxbus:sessions:reap-at"  # active sessions, by when idleness may stop them
    REAPING: Final = "voxbus:reaping:"  # + session id: the pod stopping that idle session (a short lock)
    CALL: Final = "voxbus:call:"  # + call id: the call record's hash (`call_state`)
    CALL_HISTORY: Final = "voxbus:call-history:"  # + call id: its statuses, scored by time
    CALL_DTMF: Final = "voxbus:call-dtmf:"  # + call id: the digits pressed, scored by time
    CALLS_ALL: Final = "voxbus:calls:all"  # every call id, scored by when it was first seen
    CALLS_BY_PROVIDER: Final = "voxbus:calls:provider:"  # + provider
    GREETED: Final = "voxbus:greeted:"  # + session id: its greeting was produced (replays skip it)


class SessionField:
    """Fields of the session hash (`Key.SESSION` + id), docs/architecture.md (the session record)."""

    STATUS: Final = "status"
    USER_ID: Final = "user_id"
    TENANT: Final = "tenant"  # "" for the operator's (the admin key's, a carrier's, an open server's)
    PROTOCOL: Final = "protocol"
    CODEC: Final = "codec"
    SAMPLE_RATE: Final = "sample_rate"
    CHANNELS: Final = "channels"
    CREATED_AT: Final = "created_at"
    UPDATED_AT: Final = "updated_at"
    CHUNK_COUNT: Final = "chunk_count"
    BYTES_RECEIVED: Final = "bytes_received"
    DURATION_SECONDS: Final = "duration_seconds"
    FILE_PATH: Final = "file_path"
    SEGMENTS: Final = "segments"
    POD: Final = "pod"
    CLOSE_REASON: Final = "close_reason"
    ERROR: Final = "error"
    # pipeline progress: what each stage has made durable, so a replay skips it
    TRANSCODED_SEQ: Final = "transcoded_seq"
    RESUME_OFFSET: Final = "resume_offset"  # raw-topic offset where a fresh decoder can take over
    RESUME_FRAMES: Final = "resume_frames"  # PCM frames produced before that offset
    RESUME_CHUNKS: Final = "resume_chunks"  # client chunks taken before that offset
    WAV_FORMAT: Final = "wav_format"
    WRITTEN_FRAMES: Final = "written_frames"
    FINALIZED: Final = "finalized"  # "1" once the writer completed the files
    EPOCH: Final = "epoch"  # incremented at each attach; the high bits of the records' seq
    FORMAT: Final = "format"
    ECHO: Final = "echo"
    RECORD: Final = "record"  # "0": the writer keeps none of the audio (absent: it keeps it)
    DELAY_MS: Final = "delay_ms"
    WRITER_POD: Final = "writer_pod"  # the writer that completed them (whose volume holds them)


class SessionStatus(StrEnum):
    ACTIVE = "active"
    CLOSING = "closing"
    COMPLETED = "completed"
    ERROR = "error"
