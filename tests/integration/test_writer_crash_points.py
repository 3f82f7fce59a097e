"""The writer crashing at every store write it makes, then restarting: files stay exact.

A store write that raises stands for the process dying there: the files were flushed but the
store does not know, or the store knows but the offsets were not committed. Each restart is a
new handler in the same consumer group, resuming from the last commit.
"""

import asyncio
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from tests.audio import chunked, tone_and_noise
from tests.pipeline import Session, produce, read_wav, segment_paths, settings_for, wait_finalized
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import SessionField, Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.store.base import HashValue
from voxbus.common.store.memory import InProcessStore
from voxbus.writer.service import GROUP_ID
from voxbus.writer.worker import WriteHandler


class Crash(Exception):
    pass


class CrashingStore(InProcessStore):
    """Raises on the `crash_at`-th HSET, once."""

    def __init__(self, crash_at: int) -> None:
        super().__init__()
        self.calls = 0
        self.crash_at = crash_at

    async def hset(self, key: str, mapping: Mapping[str, HashValue]) -> None:
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash(f"crash at store write {self.calls}")
        await super().hset(key, mapping)


def pcm_sessions(count: int, seconds: float, chunk_bytes: int) -> list[Session]:
    """16 kHz mono PCM sessions, as the transcoder would produce them, a different sound each."""
    return [
        Session(
            str(uuid.uuid4()),
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
        loop = ConsumerLoop(bus, [pcm], group_id=GROUP_ID, handler=handler, max_records=7)
        try:
            await loop.run(until_idle=0.3)
            return restarts
        except Crash:
            restarts += 1
            await handler.close()


async def assert_files_exact(store: InProcessStore, storage: Path, sessions: list[Session]) -> None:
    """Each session finalized, its file what an uninterrupted run makes, its segments the file."""
    for session in sessions:
        fields = await asyncio.wait_for(wait_finalized(store, session.session_id), 5)
        whole, _ = read_wav(storage / fields[SessionField.FILE_PATH])
        assert whole.tobytes() == session.expected_pcm()
        segments = np.concatenate([read_wav(p)[0] for p in segment_paths(storage, fields)])
        np.testing.assert_array_equal(segments, whole)


@pytest.mark.parametrize("crash_at", [1, 2, 3, 5, 8, 13, 21])
async def test_writer_restarts_after_a_crash_at_any_store_write(tmp_path: Path, crash_at: int) -> None:
    bus, store = InProcessBus(), CrashingStore(crash_at)
    settings = settings_for(tmp_path, "crash.", segment_seconds=0.5, partitions=2)
    await bus.create_topics(settings.topic_partitions())
    settings.audio_storage_path.mkdir(parents=True)
    pcm, events = settings.topic(Topic.AUDIO_PCM), settings.topic(Topic.EVENTS)
    sessions = pcm_sessions(3, 3.0, 2000)
    for session in sessions:  # PCM sessions are what the transcoder would produce: write them directly
        await produce(bus, settings, session, to=Topic.AUDIO_PCM)

    restarts = await write_until_done(
        bus,
        pcm,
        lambda: WriteHandler(
            bus, store, storage=settings.audio_storage_path, segment_seconds=0.5, events_topic=events, pod="w"
        ),
    )
    assert restarts == (1 if crash_at <= store.calls else 0)
    await assert_files_exact(store, settings.audio_storage_path, sessions)
