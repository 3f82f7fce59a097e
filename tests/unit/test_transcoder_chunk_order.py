"""The transcoder takes a session's client chunks in their numbered order: one sent again after a
resume is recorded once, none is taken behind a missing one, and a replay that begins at a
resume goes on from the store's resume point."""

from prometheus_client import REGISTRY

from tests.helpers import consume
from voxbus.common.bus.base import ConsumedRecord
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.records import (
    AudioChunk,
    AudioFormat,
    BusMessage,
    EchoSettings,
    SessionStart,
    decode,
    new_session_id,
)
from voxbus.common.store.memory import InProcessStore
from voxbus.transcoder.worker import TranscodeHandler

PCM = AudioFormat(codec="pcm_s16le", rate=16000, channels=1)
FRAME = 320  # bytes: 10 ms


def _start(session_id: str, seq: int, *, resume: bool) -> BusMessage:
    return SessionStart(
        session_id=session_id,
        seq=seq,
        ts_ns=0,
        format=PCM,
        protocol="session",
        echo=EchoSettings(),
        resume=resume,
    ).to_message()


def _chunk(session_id: str, seq: int, number: int, ts_ns: int = 0) -> BusMessage:
    audio = bytes([number, 0]) * (FRAME // 2)
    return AudioChunk(
        session_id=session_id, seq=seq, ts_ns=ts_ns, format=PCM, audio=audio, number=number
    ).to_message()


async def _raw(bus: InProcessBus, messages: list[BusMessage]) -> list[ConsumedRecord]:
    await bus.create_topics({"raw": 1, "pcm": 1})
    async with bus.group_consumer(["raw"], group_id="read-raw") as reader:
        for message in messages:
            await bus.send_and_wait("raw", message)
        return await consume(reader, len(messages))


async def _pcm(bus: InProcessBus, count: int) -> list[AudioChunk]:
    async with bus.group_consumer(["pcm"], group_id="read-pcm") as reader:
        items = [decode(r.key, r.value, r.headers) for r in await consume(reader, count)]
    return [item for item in items if isinstance(item, AudioChunk)]


async def _transcoded(session_id: str, chunks: list[BusMessage]) -> list[AudioChunk]:
    """The PCM records one batch of a new session's `chunks` makes."""
    async with InProcessBus() as bus, InProcessStore() as store:
        records = await _raw(bus, [_start(session_id, 1, resume=False), *chunks])
        await TranscodeHandler(bus, store, pcm_topic="pcm").handle(records)
        return await _pcm(bus, 2)


def _skipped(reason: str) -> float:
    return REGISTRY.get_sample_value("voxbus_transcoder_skipped_chunks_total", {"reason": reason}) or 0.0


async def test_chunks_sent_again_or_behind_a_missing_one_are_not_taken() -> None:
    sid = new_session_id()
    # 1, 2, then 2 and 1 again (a resume whose greeting lagged), then 4 (3 was refused), 3, 4
    numbers = [1, 2, 2, 1, 4, 3, 4]
    duplicates, gaps = _skipped("duplicate"), _skipped("gap")
    chunks = await _transcoded(sid, [_chunk(sid, 2 + i, n) for i, n in enumerate(numbers)])
    audio = b"".join(chunk.audio for chunk in chunks)
    assert [audio[i * FRAME] for i in range(len(audio) // FRAME)] == [1, 2, 3, 4]
    assert (_skipped("duplicate") - duplicates, _skipped("gap") - gaps) == (2, 1)


async def test_a_replay_that_begins_at_a_resume_goes_on_from_the_resume_point() -> None:
    # the transcoder's commit had moved past a PCM session's chunks (nothing to rebuild there);
    # it restarts, and the first record it reads is the client's resume: what follows must
    # continue the recording (pos after the three chunks), not start it again at 0
    sid = new_session_id()
    async with InProcessBus() as bus, InProcessStore() as store:
        records = await _raw(
            bus,
            [_start(sid, 1, resume=False)]
            + [_chunk(sid, 1 + n, n) for n in (1, 2, 3)]
            + [_start(sid, 1 << 32 | 1, resume=True), _chunk(sid, 1 << 32 | 2, 4)],
        )
        await TranscodeHandler(bus, store, pcm_topic="pcm").handle(records[:4])
        restarted = TranscodeHandler(bus, store, pcm_topic="pcm")
        await restarted.handle(records[4:])
        chunks = await _pcm(bus, 4)
    assert [(chunk.pos, chunk.audio[0]) for chunk in chunks] == [(0, 1), (3 * FRAME // 2, 4)]


async def test_a_record_of_several_chunks_carries_its_oldest_chunks_arrival() -> None:
    # the writer times socket-to-file from it: the newest chunk's arrival would hide the wait of
    # every chunk before it in the record
    sid = new_session_id()
    (chunk,) = await _transcoded(sid, [_chunk(sid, 2 + n, 1 + n, ts_ns=1000 * (1 + n)) for n in range(3)])
    assert (len(chunk.audio), chunk.seq, chunk.ts_ns) == (3 * FRAME, 4, 1000)
