"""The writer keeps at most `max_open` sessions' files open, and the files stay exact.

Sessions interleaved on one partition force the least recently written one closed and resumed
again and again. Dying before a store write still gives files identical to an uninterrupted
run: the scenario makes STORE_WRITES writes, and the crash points sample each kind (a session's first
write, a closing checkpoint, a batch's checkpoint, a finished record, a `finalized` notice).
"""

import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.crashing import CrashingStore
from tests.integration.test_writer_crash_points import assert_files_exact, pcm_sessions, write_until_done
from tests.pipeline import produce_interleaved, settings_for
from voxbus.common.bus.base import ConsumedRecord, TopicPartition
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Topic
from voxbus.common.store.memory import InProcessStore
from voxbus.writer.worker import WriteHandler

MAX_OPEN = 2
STORE_WRITES = 148  # what an uninterrupted run of the scenario below writes to the store


def _open_files_under(root: Path) -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(str(root))
    return count


def _least_recent_closed() -> float:
    return REGISTRY.get_sample_value("voxbus_writer_least_recent_closed_total") or 0.0


class CountingHandler(WriteHandler):
    most_open = 0

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        offsets = await super().handle(records)
        CountingHandler.most_open = max(CountingHandler.most_open, _open_files_under(self._storage))
        return offsets


@pytest.mark.parametrize("crash_at", [0, 3, 4, 9, 11, 30, STORE_WRITES - 1, STORE_WRITES])
async def test_at_most_max_open_recordings_are_open_and_the_files_stay_exact(
    tmp_path: Path, crash_at: int
) -> None:
    bus, store = InProcessBus(), CrashingStore(InProcessStore(), crash_at)
    settings = settings_for(tmp_path, "lru.", segment_seconds=0.5, partitions=1)
    await bus.create_topics(settings.topic_partitions())
    settings.audio_storage_path.mkdir(parents=True)
    pcm, events = settings.topic(Topic.AUDIO_PCM), settings.topic(Topic.EVENTS)
    sessions = pcm_sessions(5, 2.0, 3200)
    # interleaved on the one partition: every batch touches more sessions than may be open
    await produce_interleaved(bus, settings, sessions, to=Topic.AUDIO_PCM)

    CountingHandler.most_open = 0
    closed_before = _least_recent_closed()
    restarts = await write_until_done(
        bus,
        pcm,
        lambda: CountingHandler(
            bus,
            store.as_store(),
            storage=settings.audio_storage_path,
            segment_seconds=0.5,
            events_topic=events,
            pod="w",
            max_open=MAX_OPEN,
        ),
    )
    assert (restarts, store.crashes) == ((1, 1) if crash_at else (0, 0))
    assert crash_at or store.writes == STORE_WRITES, "the writer's store writes changed: update STORE_WRITES"
    assert _least_recent_closed() - closed_before > 10 * len(sessions)  # closed and resumed again and again
    assert 0 < CountingHandler.most_open <= 2 * MAX_OPEN  # a whole file and a segment each
    await assert_files_exact(store.as_store(), settings.audio_storage_path, sessions)
    assert _open_files_under(settings.audio_storage_path) == 0
