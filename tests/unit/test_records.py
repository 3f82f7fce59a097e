"""Golden bytes of every session record, and round trips through `decode`."""

import pytest

from voxbus.common.records import (
    AudioChunk,
    AudioFormat,
    ChunkEncoder,
    EchoSettings,
    RecordError,
    SessionError,
    SessionFinalized,
    SessionStart,
    SessionStop,
    decode,
    new_session_id,
)

SID = "5b0b8d52-3a43-4d1e-8f0e-7d3c2b1a0f9e"
KEY = SID.encode()
PCM16K = AudioFormat(codec="pcm_s16le", rate=16000, channels=1)


def test_start_golden() -> None:
    start = SessionStart(
        session_id=SID,
        seq=0,
        ts_ns=1_700_000_000_123_456_789,
        format=AudioFormat(codec="wav", rate=44100, channels=2),
        protocol="session",
        user_id="alice",
        echo=EchoSettings(enabled=True, delay_ms=250),
    )
    wire = start.to_message()
    assert wire.key == KEY
    assert wire.headers == (
        ("t", b"start"),
        ("sid", KEY),
        ("seq", b"0"),
        ("ts", b"1700000000123456789"),
    )
    assert wire.value == (
        b'{"echo":{"delay_ms":250,"enabled":true},"format":{"ch":2,"codec":"wav","rate":44100},'
        b'"protocol":"session","resume":false,"user_id":"alice"}'
    )
    assert decode(wire.key, wire.value, wire.headers) == start


def test_chunk_golden_keeps_audio_bytes_untouched() -> None:
    audio = bytes([0, 1, 254, 255]) * 160
    chunk = AudioChunk(session_id=SID, seq=7, ts_ns=42, format=PCM16K, audio=audio)
    wire = chunk.to_message()
    assert wire.value is audio
    assert wire.headers == (
        ("t", b"chunk"),
        ("sid", KEY),
        ("seq", b"7"),
        ("ts", b"42"),
        ("codec", b"pcm_s16le"),
        ("rate", b"16000"),
        ("ch", b"1"),
    )
    assert decode(wire.key, wire.value, wire.headers) == chunk


def test_one_session_encoder_gives_every_chunk_its_own_seq_and_time() -> None:
    encoder = ChunkEncoder(SID, PCM16K)
    first, second = encoder.message(4294967297, 10, b"\x01\x00"), encoder.message(4294967298, 30, b"\x02\x00")
    assert decode(first.key, first.value, first.headers) == AudioChunk(
        session_id=SID, seq=4294967297, ts_ns=10, format=PCM16K, audio=b"\x01\x00"
    )
    assert decode(second.key, second.value, second.headers) == AudioChunk(
        session_id=SID, seq=4294967298, ts_ns=30, format=PCM16K, audio=b"\x02\x00"
    )


def test_pcm_chunk_carries_its_position() -> None:
    chunk = AudioChunk(session_id=SID, seq=9, ts_ns=1, format=PCM16K, audio=b"\x00\x01" * 4, pos=48000)
    wire = chunk.to_message()
    assert wire.headers[-1] == ("pos", b"48000")
    assert decode(wire.key, wire.value, wire.headers) == chunk


def test_raw_chunk_carries_its_number_in_the_session() -> None:
    chunk = AudioChunk(
        session_id=SID, seq=(3 << 32) | 7, ts_ns=1, format=PCM16K, audio=b"\x00\x01", number=412
    )
    wire = chunk.to_message()
    assert wire.headers[-1] == ("n", b"412")
    assert decode(wire.key, wire.value, wire.headers) == chunk


@pytest.mark.parametrize(
    ("record", "value"),
    [
        (SessionStop(session_id=SID, seq=9, ts_ns=5, reason="client"), b'{"reason":"client"}'),
        (SessionError(session_id=SID, seq=3, ts_ns=5, reason="bad opus"), b'{"reason":"bad opus"}'),
        (
            SessionFinalized(
                session_id=SID,
                seq=10,
                ts_ns=6,
                file_path=f"{SID}.wav",
                duration_seconds=95.0,
                segments=(f"{SID}/segment_00000.wav",),
            ),
            b'{"duration_seconds":95.0,"file_path":"'
            + KEY
            + b'.wav","segments":["'
            + KEY
            + b'/segment_00000.wav"]}',
        ),
    ],
)
def test_json_records_golden(record: SessionStop | SessionError | SessionFinalized, value: bytes) -> None:
    wire = record.to_message()
    assert wire.value == value
    assert dict(wire.headers)["t"] == record._type.value.encode()
    assert decode(wire.key, wire.value, wire.headers) == record


def test_resume_start_round_trips() -> None:
    start = SessionStart(session_id=SID, seq=12, ts_ns=1, format=PCM16K, protocol="session", resume=True)
    wire = start.to_message()
    decoded = decode(wire.key, wire.value, wire.headers)
    assert isinstance(decoded, SessionStart)
    assert decoded.resume
    assert decoded.echo == EchoSettings()


@pytest.mark.parametrize(
    ("key", "value", "headers", "reason"),
    [
        (KEY, b"", (("t", b"nope"),), "unknown record type"),
        (KEY, b"", (), "unknown record type"),
        (None, b"{}", (("t", b"stop"), ("sid", KEY), ("seq", b"1"), ("ts", b"1")), "no key"),
        (b"other", b"{}", (("t", b"stop"), ("sid", KEY), ("seq", b"1"), ("ts", b"1")), "does not match"),
        (KEY, b"{}", (("t", b"stop"), ("sid", KEY), ("seq", b"x"), ("ts", b"1")), "malformed record headers"),
        (KEY, b"not json", (("t", b"stop"), ("sid", KEY), ("seq", b"1"), ("ts", b"1")), "not JSON"),
        (KEY, b"[1]", (("t", b"stop"), ("sid", KEY), ("seq", b"1"), ("ts", b"1")), "not a JSON object"),
        (KEY, b"{}", (("t", b"start"), ("sid", KEY), ("seq", b"1"), ("ts", b"1")), "malformed start"),
        (
            KEY,
            b"pcm",
            (("t", b"chunk"), ("sid", KEY), ("seq", b"1"), ("ts", b"1"), ("codec", b"pcm_s16le")),
            "malformed chunk headers",
        ),
        (
            KEY,
            b"pcm",
            (
                ("t", b"chunk"),
                ("sid", KEY),
                ("seq", b"1"),
                ("ts", b"1"),
                ("codec", b"speex"),
                ("rate", b"16000"),
                ("ch", b"1"),
            ),
            "unknown codec",
        ),
    ],
)
def test_malformed_records_are_rejected_with_a_reason(
    key: bytes | None, value: bytes, headers: tuple[tuple[str, bytes], ...], reason: str
) -> None:
    with pytest.raises(RecordError, match=reason):
        decode(key, value, headers)


def test_format_validation() -> None:
    with pytest.raises(RecordError, match="channels"):
        AudioFormat(codec="wav", rate=16000, channels=3)
    with pytest.raises(RecordError, match="sample rate"):
        AudioFormat(codec="wav", rate=0, channels=1)
    with pytest.raises(RecordError, match="delay"):
        EchoSettings(enabled=True, delay_ms=-1)


def test_session_ids_are_uuid4() -> None:
    sid = new_session_id()
    assert len(sid) == 36
    assert sid[14] == "4"
    assert sid != new_session_id()
