"""The writer dying just before each store write it makes, in turn, then restarting: files stay exact.

The scenario makes WRITER_STORE_WRITES store writes when nothing fails, and each test case dies
before one of them: the files were flushed but the store does not know, or the store knows part
of a batch (or all of it, dying before the `finalized` notice) but the offsets were not
committed. Each restart is a new handler in the same consumer group, resuming from the last
commit. Every case asserts that its crash happened.
"""

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.audio import chunked, tone_and_noise
from tests.crashing import Crash, CrashingStore
from tests.pipeline import Session, produce, read_wav, segment_paths, settings_for, wait_finalized
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Key, SessionField, Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.state import SessionNotice
from voxbus.common.store.base import StateStore
from voxbus.common.store.memory import InProcessStore
from voxbus.writer.service import GROUP
from voxbus.writer.worker import WriteHandler

# What an uninterrupted run of the scenario below writes to the store (HSETs of progress and of
# the finished record, and the `finalized` notices); every one of them is a crash point.
WRITER_STORE_WRITES = 32


def pcm_sessions(count: int, seconds: float, chunk_bytes: int) -> list[Session]:
    """16 kHz mono PCM sessions, as the transcoder would produce them, a different sound each. Their
    ids are fixed, so their partitions, and with them the batches, are the same every run."""
    return [
        Session(
            str(uuid.UUID(int=n + 1)),
            "pcm_s16le",
            16000,
            1,
            chunked(tone_and_noise(seconds, 16000, seed=n).tobytes(), chunk_bytes),
        )
        for n in range(count)
    ]


async def write_until_done(bus: InProcessBus, pcm: str, make_handler: Callable[[], WriteHandler]) -> int:
    """Run a writer until the topic is quiet, starting a new one after each `Crash` (as the
    runtime does, from the last commit); how many restarts it took."""
    restarts = 0
    while True:
        handler = make_handler()
        loop = ConsumerLoop(bus, [pcm], group_id=pcm + "." + GROUP, handler=handler, max_records=7)
        try:
            await loop.run(until_idle=0.3)
            return restarts
        except Crash:
            restarts += 1
            await handler.close()


async def assert_files_exact(store: StateStore, storage: Path, sessions: list[Session]) -> None:
    """Each session finalized, its file what an uninterrupted run makes, its segments the file."""
    for session in sessions:
        fields = await asyncio.wait_for(wait_finalized(store, session.session_id), 5)
        whole, _ = read_wav(storage / fields[SessionField.FILE_PATH])
        assert whole.tobytes() == session.expected_pcm()
        segments = np.concatenate([read_wav(p)[0] for p in segment_paths(storage, fields)])
        np.testing.assert_array_equal(segments, whole)


async def write_three_sessions(tmp_path: Path, store: CrashingStore) -> int:
    """Three PCM sessions on two partitions, written by writers that share `store` until one
    finishes (a new one after each `Crash`); then the files are checked. The restarts it took."""
    bus = InProcessBus()
    settings = settings_for(tmp_path, "crash.", segment_seconds=0.5, partitions=2)
    await bus.create_topics(settings.topic_partitions())
    settings.audio_storage_path.mkdir(parents=True)
    pcm, events = settings.topic(Topic.AUDIO_PCM), settings.topic(Topic.EVENTS)
    sessions = pcm_sessions(3, 3.0, 2000)
    for session in sessions:  # PCM sessions are what the transcoder would produce: write them directly
        await produce(bus, settings, session, to=Topic.AUDIO_PCM)

    channels = [Key.SESSION_CHANNEL + session.session_id for session in sessions]
    async with store.as_store().subscribe(*channels) as notices:
        restarts = await write_until_done(
            bus,
            pcm,
            lambda: WriteHandler(
                bus,
                store.as_store(),
                storage=settings.audio_storage_path,
                segment_seconds=0.5,
                events_topic=events,
                pod="w",
            ),
        )
        await assert_files_exact(store.as_store(), settings.audio_storage_path, sessions)
        # a client waiting on `close_session` hears of every session, whenever the writer died
        # (dying between the `finalized` write and its notice left that client waiting for good)
        told = set()
        while len(told) < len(channels) and (notice := await notices.get(timeout=5)) is not None:
            if notice.data == SessionNotice.FINALIZED:
                told.add(notice.channel)
        assert told == set(channels)
    return restarts


@pytest.mark.parametrize("crash_at", range(WRITER_STORE_WRITES + 1))
async def test_writer_restarts_after_dying_before_any_store_write(tmp_path: Path, crash_at: int) -> None:
    """`crash_at` 0: the uninterrupted run, which makes exactly WRITER_STORE_WRITES writes."""
    store = CrashingStore(InProcessStore(), crash_at)
    restarts = await write_three_sessions(tmp_path, store)
    assert (restarts, store.crashes) == ((1, 1) if crash_at else (0, 0))
    assert crash_at or store.writes == WRITER_STORE_WRITES, "the writes changed: update WRITER_STORE_WRITES"
