"""The session record: the hash every service reads and writes (`session_state`), golden field by
field, and the record as API clients read it (`GET /api/audio/sessions/{id}`, close replies)."""

import json
from dataclasses import fields

import pytest

from tests.helpers import score
from voxbus.common.constants import Key, SessionField, SessionStatus
from voxbus.common.records import AudioFormat, EchoSettings, new_session_id
from voxbus.common.session_state import SessionHashes, SessionState, SessionUpdate
from voxbus.common.state import StateError
from voxbus.common.store.memory import InProcessStore
from voxbus.ingest.sessions import SessionRegistry, SessionSpec, session_info

SESSION_ID = "0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a"
NOW = 1700000000.25

# the hash of a session created with echo after 250 ms, 44.1 kHz stereo WAV, as the store holds it
CREATED = {
    "status": "active",
    "user_id": "alice",
    "protocol": "session",
    "format": "wav",
    "codec": "wav",
    "sample_rate": "44100",
    "channels": "2",
    "echo": "1",
    "delay_ms": "250",
    "record": "1",
    "created_at": "1700000000.25",
    "updated_at": "1700000000.25",
    "chunk_count": "0",
    "bytes_received": "0",
    "pod": "ingest-a",
}


def test_a_failed_session_shows_its_reason() -> None:
    fields = {SessionField.STATUS: "error", SessionField.FINALIZED: "1", SessionField.ERROR: "bad bytes"}
    info = session_info(
        SessionState.from_hash(SESSION_ID, {**fields, SessionField.CLOSE_REASON: "bad bytes"})
    ).body()
    assert (info["status"], info["error"], info["close_reason"]) == ("error", "bad bytes", "bad bytes")


def test_created_session_hash_golden() -> None:
    created = SessionUpdate.created(
        user_id="alice",
        protocol="session",
        format_name="wav",
        audio_format=AudioFormat(codec="wav", rate=44100, channels=2),
        echo=EchoSettings(enabled=True, delay_ms=250),
        pod="ingest-a",
        now=NOW,
    )
    assert created.to_hash() == CREATED


async def test_the_registry_writes_the_created_hash_and_its_indexes() -> None:
    store = InProcessStore()
    registry = SessionRegistry(store, pod="ingest-a")
    spec = SessionSpec(
        user_id="alice",
        protocol="session",
        format=AudioFormat(codec="pcm_s16le", rate=16000, channels=1),
        echo=EchoSettings(),
    )
    session_id = new_session_id()
    returned = await registry.create(session_id, spec)
    stored = await store.hgetall(Key.SESSION + session_id)
    created_at = stored["created_at"]
    assert returned == float(created_at)
    assert stored == {
        **CREATED,
        "format": "pcm",
        "codec": "pcm_s16le",
        "sample_rate": "16000",
        "channels": "1",
        "echo": "0",
        "delay_ms": "0",
        "created_at": created_at,
        "updated_at": created_at,
    }
    assert repr(float(created_at)) == created_at
    assert await score(store, Key.SESSIONS_ALL, session_id) == float(created_at)
    assert await score(store, Key.SESSIONS_BY_USER + "alice", session_id) == float(created_at)


def test_api_json_of_a_created_session_golden() -> None:
    state = SessionState.from_hash(SESSION_ID, CREATED)
    assert json.dumps(session_info(state).body()) == (
        '{"session_id": "0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a", "user_id": "alice", "tenant": "", '
        '"status": "active", '
        '"protocol": "session", "sample_rate": 44100, "channels": 2, "format": "wav", '
        '"created_at": 1700000000.25, "updated_at": 1700000000.25, "total_chunks": 0, '
        '"bytes_received": 0, "duration_seconds": 0.0, "file_path": null, "segments": [], '
        '"close_reason": null, "error": null}'
    )


def test_api_json_of_a_session_with_nothing_recorded_golden() -> None:
    """Every field absent: what the API showed for each before the record was typed."""
    assert json.dumps(session_info(SessionState(session_id=SESSION_ID)).body()) == (
        '{"session_id": "0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a", "user_id": "", "tenant": "", '
        '"status": "active", '
        '"protocol": "", "sample_rate": 0, "channels": 0, "format": "", "created_at": 0.0, '
        '"updated_at": 0.0, "total_chunks": 0, "bytes_received": 0, "duration_seconds": 0.0, '
        '"file_path": null, "segments": [], "close_reason": null, "error": null}'
    )


def test_finalized_hash_and_its_api_json_golden() -> None:
    finalized = SessionUpdate(
        status=SessionStatus.COMPLETED,
        finalized=True,
        writer_pod="writer-0",
        file_path=f"{SESSION_ID}.wav",
        segments=(f"{SESSION_ID}/segment_00000.wav", f"{SESSION_ID}/segment_00001.wav"),
        duration_seconds=95.0,
        written_frames=4_189_500,
        updated_at=1700000095.5,
        close_reason="client",
    )
    written = finalized.to_hash()
    assert written == {
        "status": "completed",
        "duration_seconds": "95.0",
        "file_path": f"{SESSION_ID}.wav",
        "segments": f'["{SESSION_ID}/segment_00000.wav", "{SESSION_ID}/segment_00001.wav"]',
        "close_reason": "client",
        "updated_at": "1700000095.5",
        "written_frames": "4189500",
        "finalized": "1",
        "writer_pod": "writer-0",
    }
    info = session_info(
        SessionState.from_hash(SESSION_ID, {**CREATED, "chunk_count": "4750", **written})
    ).body()
    assert json.dumps(info) == (
        '{"session_id": "0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a", "user_id": "alice", '
        '"tenant": "", "status": "completed", "protocol": "session", "sample_rate": 44100, "channels": 2, '
        '"format": "wav", "created_at": 1700000000.25, "updated_at": 1700000095.5, '
        '"total_chunks": 4750, "bytes_received": 0, "duration_seconds": 95.0, '
        '"file_path": "0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a.wav", '
        '"segments": ["0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a/segment_00000.wav", '
        '"0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a/segment_00001.wav"], '
        '"close_reason": "client", "error": null}'
    )


def test_transcoder_progress_golden() -> None:
    progress = SessionUpdate(
        transcoded_seq=(3 << 32) | 41,
        resume_offset=1207,
        resume_frames=96_000,
        resume_chunks=300,
        wav_format={"encoding": "int", "bits": 16, "sample_rate": 8000, "channels": 1, "data_bytes": None},
        status=SessionStatus.ERROR,
        error="invalid Opus packet",
    )
    assert progress.to_hash() == {
        "status": "error",
        "error": "invalid Opus packet",
        "transcoded_seq": "12884901929",
        "resume_offset": "1207",
        "resume_frames": "96000",
        "resume_chunks": "300",
        "wav_format": (
            '{"encoding": "int", "bits": 16, "sample_rate": 8000, "channels": 1, "data_bytes": null}'
        ),
    }


def test_an_update_that_sets_nothing_is_empty() -> None:
    assert SessionUpdate().to_hash() == {}


def test_every_field_round_trips() -> None:
    update = SessionUpdate(
        status=SessionStatus.CLOSING,
        user_id="bob",
        tenant="acme",
        protocol="echo",
        format="pcm",
        codec="pcm_s16le",
        sample_rate=8000,
        channels=1,
        echo=True,
        delay_ms=40,
        record=False,
        created_at=1.5,
        updated_at=2.75,
        chunk_count=12,
        bytes_received=3840,
        duration_seconds=0.24,
        file_path="x.wav",
        segments=("x/segment_00000.wav",),
        pod="ingest-b",
        close_reason="idle",
        error="none",
        transcoded_seq=7,
        resume_offset=3,
        resume_frames=1920,
        resume_chunks=6,
        wav_format={"bits": 16},
        written_frames=1920,
        finalized=True,
        writer_pod="writer-1",
    )
    written = update.to_hash()
    assert set(written) == {field.name for field in fields(SessionUpdate)}
    state = SessionState.from_hash(SESSION_ID, {**written, SessionField.EPOCH: "4"})
    for field in fields(SessionUpdate):
        assert getattr(state, field.name) == getattr(update, field.name), field.name
    assert state.epoch == 4
    assert state.audio_format() == AudioFormat(codec="pcm_s16le", rate=8000, channels=1)
    assert state.echo_settings() == EchoSettings(enabled=True, delay_ms=40)


def test_the_typed_record_names_every_field_of_the_hash() -> None:
    hash_fields = {value for name, value in vars(SessionField).items() if name.isupper()}
    assert {field.name for field in fields(SessionState)} == hash_fields | {"session_id"}
    assert {field.name for field in fields(SessionUpdate)} == hash_fields - {SessionField.EPOCH}


def test_absent_fields_take_one_set_of_defaults() -> None:
    state = SessionState.from_hash(SESSION_ID, {})
    assert state.status == SessionStatus.ACTIVE
    assert (state.codec, state.sample_rate, state.channels, state.written_frames) == (None, None, None, None)
    assert state.audio_format() == AudioFormat(codec="pcm_s16le", rate=16000, channels=1)
    assert state.echo_settings() == EchoSettings(enabled=False, delay_ms=0)
    assert not state.finalized
    assert not state.ended


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        (SessionField.STATUS, "paused", "status: unknown status 'paused'"),
        (SessionField.SAMPLE_RATE, "16k", "sample_rate: not an integer: '16k'"),
        (SessionField.CREATED_AT, "yesterday", "created_at: not a number: 'yesterday'"),
        (SessionField.SEGMENTS, "[", "segments: not JSON"),
        (SessionField.SEGMENTS, '{"a": 1}', "segments: not a JSON list of paths"),
        (SessionField.WAV_FORMAT, "[16]", "wav_format: not a JSON object"),
    ],
)
def test_unreadable_fields_are_refused_with_the_field_named(field: str, value: str, reason: str) -> None:
    with pytest.raises(StateError, match=reason.replace("[", r"\[")):
        SessionState.from_hash(SESSION_ID, {**CREATED, field: value})


async def test_store_operations_on_the_hash() -> None:
    store = InProcessStore()
    hashes = SessionHashes(store)
    assert await hashes.read(SESSION_ID) is None
    assert not await hashes.finalized(SESSION_ID)

    batch = store.batch()
    hashes.queue_update(batch, SESSION_ID, SessionUpdate(status=SessionStatus.ACTIVE, pod="ingest-a"))
    epoch_at = hashes.queue_new_epoch(batch, SESSION_ID)
    hashes.queue_received(batch, SESSION_ID, chunks=3, size=960)
    hashes.queue_update(batch, SESSION_ID, SessionUpdate())  # sets nothing: queues nothing
    assert len(batch.calls) == 4
    assert (await batch.execute())[epoch_at] == 1
    assert await hashes.new_epoch(SESSION_ID) == 2
    assert await store.hgetall(Key.SESSION + SESSION_ID) == {
        "status": "active",
        "pod": "ingest-a",
        "epoch": "2",
        "chunk_count": "3",
        "bytes_received": "960",
    }

    # a compare-and-set on the status: applied while active, refused once the status moved on
    batch = store.batch()
    closing = SessionUpdate(status=SessionStatus.CLOSING, close_reason="client")
    applied_at = hashes.queue_update_if(batch, SESSION_ID, SessionStatus.ACTIVE, closing)
    assert (await batch.execute())[applied_at] is True
    batch = store.batch()
    again_at = hashes.queue_update_if(
        batch, SESSION_ID, SessionStatus.ACTIVE, SessionUpdate(close_reason="x")
    )
    assert (await batch.execute())[again_at] is False

    await hashes.update(SESSION_ID, SessionUpdate(finalized=True, status=SessionStatus.COMPLETED))
    await hashes.update(SESSION_ID, SessionUpdate())  # writes nothing
    assert await hashes.finalized(SESSION_ID)
    state = await hashes.read(SESSION_ID)
    assert state is not None
    assert (state.status, state.close_reason, state.chunk_count, state.epoch) == ("completed", "client", 3, 2)
    assert state.ended
    other = "2c7e1f3a-0d4b-4c5e-8f6a-7b8c9d0e1f2a"
    assert [s and s.session_id for s in await hashes.read_many([other, SESSION_ID])] == [None, SESSION_ID]
