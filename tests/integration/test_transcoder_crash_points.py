"""The transcoder dying just before each store write it makes, in turn, then restarting: files stay exact.

Sessions of four codecs are in flight on two partitions. The scenario makes
TRANSCODER_STORE_WRITES store writes when nothing fails, and each test case dies before one of
them: after its output was produced but before its progress was recorded, or with part of a
batch's progress recorded but its offsets not committed. The writer runs throughout, on the same
store (its writes are not crash points here). Every case asserts that its crash happened.
"""

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest

from tests.audio import chunked, encode, opus_packets, speech, tone_and_noise, wav_bytes
from tests.crashing import Crash, CrashingStore
from tests.pipeline import Session, produce, read_wav, settings_for, wait_finalized
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import SessionField, Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.store.memory import InProcessStore
from voxbus.transcoder.service import GROUP as TRANSCODER_GROUP
from voxbus.transcoder.worker import TranscodeHandler
from voxbus.writer.service import GROUP as WRITER_GROUP
from voxbus.writer.worker import WriteHandler

# What an uninterrupted run of the scenario below writes to the store (each session's format at
# its start, and the progress of each batch); every one of them is a crash point.
TRANSCODER_STORE_WRITES = 38
_ID = {n: str(uuid.UUID(int=n)) for n in range(1, 6)}


@pytest.mark.parametrize("crash_at", range(TRANSCODER_STORE_WRITES + 1))
async def test_transcoder_restarts_after_dying_before_any_store_write(tmp_path: Path, crash_at: int) -> None:
    """`crash_at` 0: the uninterrupted run, which makes exactly TRANSCODER_STORE_WRITES writes."""
    bus, store = InProcessBus(), InProcessStore()
    crashing = CrashingStore(store, crash_at)
    settings = settings_for(tmp_path, "tcrash.", segment_seconds=0.5, partitions=2)
    await bus.create_topics(settings.topic_partitions())
    settings.audio_storage_path.mkdir(parents=True)
    raw, pcm, events = (settings.topic(t) for t in (Topic.AUDIO_RAW, Topic.AUDIO_PCM, Topic.EVENTS))
    # fixed ids, so the partitions (and with them the batches and the crash points) are the same
    # every run: the WAV session alone on partition 0, the others one after another on 1
    sessions = [
        Session(_ID[2], "pcm_s16le", 16000, 1, chunked(tone_and_noise(2.0, 16000).tobytes(), 1001)),
        Session(_ID[3], "opus", 16000, 1, opus_packets(speech(2.0, 16000), 16000)),
        Session(_ID[1], "wav", 16000, 1, chunked(wav_bytes(speech(2.0, 44100), 44100), 3000)),
        Session(
            _ID[5],
            "mp3",
            16000,
            1,
            chunked(encode(speech(2.0, 44100), 44100, container="mp3", codec="libmp3lame"), 700),
        ),
    ]
    for session in sessions:
        await produce(bus, settings, session)

    writer = WriteHandler(
        bus, store, storage=settings.audio_storage_path, segment_seconds=0.5, events_topic=events, pod="w"
    )
    writing = asyncio.create_task(
        ConsumerLoop(bus, [pcm], group_id=settings.consumer_group(WRITER_GROUP), handler=writer).run()
    )
    restarts = 0
    try:
        while True:
            handler = TranscodeHandler(bus, crashing.as_store(), pcm_topic=pcm)
            group = settings.consumer_group(TRANSCODER_GROUP)
            loop = ConsumerLoop(bus, [raw], group_id=group, handler=handler, max_records=9)
            try:
                await loop.run(until_idle=0.3)
                break
            except Crash:
                restarts += 1
        results = {s.session_id: await wait_finalized(store, s.session_id, timeout=10) for s in sessions}
    finally:
        writing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        await writer.close()

    assert (restarts, crashing.crashes) == ((1, 1) if crash_at else (0, 0))
    assert crash_at or crashing.writes == TRANSCODER_STORE_WRITES, "update TRANSCODER_STORE_WRITES"
    for session in sessions:
        whole, _ = read_wav(settings.audio_storage_path / results[session.session_id][SessionField.FILE_PATH])
        assert whole.tobytes() == session.expected_pcm(), session.codec
