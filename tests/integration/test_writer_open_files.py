"""The writer keeps at most `max_open` sessions' files open, and the files stay exact.

Sessions interleaved on one partition force the least recently written one closed and resumed
again and again; a crash at any store write in between (the closing checkpoint among them) still
gives files identical to an uninterrupted run.
"""

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.integration.test_writer_crash_points import (
    CrashingStore,
    assert_files_exact,
    pcm_sessions,
    write_until_done,
)
from tests.pipeline import produce, settings_for
from voxbus.common.bus.base import ConsumedRecord, TopicPartition
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Topic
from voxbus.writer.worker import WriteHandler

MAX_OPEN = 2


def _open_files_under(root: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(root))
    return count


class CountingHandler(WriteHandler):
    most_open = 0

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        offsets = await super().handle(records)
        CountingHandler.most_open = max(CountingHandler.most_open, _open_files_under(self._storage))
        return offsets


@pytest.mark.parametrize("crash_at", [0, 4, 9, 17, 30])
async def test_at_most_max_open_recordings_are_open_and_the_files_stay_exact(
    tmp_path: Path, crash_at: int
) -> None:
    bus, store = InProcessBus(), CrashingStore(crash_at)
    settings = settings_for(tmp_path, "lru.", segment_seconds=0.5, partitions=1)
    await bus.create_topics(settings.topic_partitions())
    settings.audio_storage_path.mkdir(parents=True)
    pcm, events = settings.topic(Topic.AUDIO_PCM), settings.topic(Topic.EVENTS)
    sessions = pcm_sessions(5, 2.0, 3200)
    # interleaved on the one partition: every batch touches more sessions than may be open
    await asyncio.gather(*(produce(bus, settings, s, to=Topic.AUDIO_PCM) for s in sessions))

    CountingHandler.most_open = 0
    restarts = await write_until_done(
        bus,
        pcm,
        lambda: CountingHandler(
            bus,
            store,
            storage=settings.audio_storage_path,
            segment_seconds=0.5,
            events_topic=events,
            pod="w",
            max_open=MAX_OPEN,
        ),
    )
    assert restarts == (1 if 0 < crash_at <= store.calls else 0)
    assert 0 < CountingHandler.most_open <= 2 * MAX_OPEN  # a whole file and a segment each
    await assert_files_exact(store, settings.audio_storage_path, sessions)
    assert _open_files_under(settings.audio_storage_path) == 0
