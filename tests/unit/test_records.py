"""Golden bytes of every bus record, and round trips: the session records through `decode`, the
egress record through `EgressAudio`."""

import pytest

from voxbus.common.records import (
    AudioChunk,
    AudioFormat,
    ChunkEncoder,
    EchoSettings,
    EgressAudio,
    EgressEncoder,
    RecordError,
    SessionError,
    SessionFinalized,
    SessionStart,
    SessionStop,
    chunk_order,
    decode,
    new_session_id,
    record_type,
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


def test_egress_golden() -> None:
    """The bytes the echo service has always produced: records in flight during a rolling deploy
    parse on either side."""
    audio = b"\x01\x00\xff\x7f" * 80
    egress = EgressAudio(
        session_id=SID,
        audio=audio,
        ts_ns=1_700_000_000_123_456_789,
        seq=(2 << 32) | 17,
        due_ns=1_700_000_000_373_456_789,
    )
    wire = egress.to_message()
    assert wire.key == KEY
    assert wire.value is audio
    assert wire.headers == (
        ("t", b"chunk"),
        ("ts", b"1700000000123456789"),
        ("seq", b"8589934609"),
        ("due", b"1700000000373456789"),
    )
    assert EgressAudio.from_message(wire.key, wire.value, wire.headers) == egress
    assert egress.due == 1_700_000_000_373_456_789 / 1e9  # as ingest has always read it
    encoded = EgressEncoder(SID).message(audio, ts_ns=egress.ts_ns, seq=egress.seq, due_ns=egress.due_ns)
    assert encoded == wire


def test_egress_without_order_or_due_golden() -> None:
    """Audio to play at once (a prompt): only the type header, delivered however often it comes."""
    egress = EgressAudio(session_id=SID, audio=b"\x00\x00")
    wire = egress.to_message()
    assert wire.headers == (("t", b"chunk"),)
    decoded = EgressAudio.from_message(wire.key, wire.value, wire.headers)
    assert decoded == egress
    assert (decoded.seq, decoded.due, decoded.ts_ns) == (None, None, None)


def test_egress_headers_parse_in_any_order_and_an_empty_seq_is_none() -> None:
    # what an echo service before typed records sent for a chunk that had no seq
    headers = (("due", b"20"), ("seq", b""), ("t", b"chunk"), ("ts", b"10"))
    assert EgressAudio.from_message(KEY, b"a", headers) == EgressAudio(
        session_id=SID, audio=b"a", ts_ns=10, seq=None, due_ns=20
    )


def test_an_egress_record_is_not_a_session_record() -> None:
    wire = EgressAudio(session_id=SID, audio=b"a", ts_ns=1, seq=2, due_ns=3).to_message()
    with pytest.raises(RecordError, match="malformed record headers"):
        decode(wire.key, wire.value, wire.headers)


@pytest.mark.parametrize(
    ("key", "headers", "reason"),
    [
        (None, (("t", b"chunk"),), "no key"),
        (b"", (("t", b"chunk"),), "no key"),
        (KEY, (), "expected an egress record"),
        (KEY, (("t", b"stop"),), "expected an egress record"),
        (KEY, (("t", b"chunk"), ("due", b"soon")), "malformed egress record"),
        (KEY, (("t", b"chunk"), ("seq", b"x")), "malformed egress record"),
        (b"\xff", (("t", b"chunk"),), "malformed egress record"),
    ],
)
def test_malformed_egress_is_rejected_with_a_reason(
    key: bytes | None, headers: tuple[tuple[str, bytes], ...], reason: str
) -> None:
    with pytest.raises(RecordError, match=reason):
        EgressAudio.from_message(key, b"a", headers)


def test_cheap_accessors_read_what_decode_reads() -> None:
    wire = AudioChunk(
        session_id=SID, seq=(1 << 32) | 3, ts_ns=77, format=PCM16K, audio=b"\x00\x00"
    ).to_message()
    assert record_type(wire.headers) == "chunk"
    assert chunk_order(wire.headers) == ((1 << 32) | 3, 77)
    assert record_type(()) == ""
    with pytest.raises(RecordError, match="without a seq or an ingest time"):
        chunk_order((("t", b"chunk"), ("seq", b"1")))
    with pytest.raises(RecordError, match="malformed chunk headers"):
        chunk_order((("seq", b"1"), ("ts", b"later")))
