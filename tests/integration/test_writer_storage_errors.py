"""A session whose files the writer cannot open or write ends `error` with the reason, and the
other sessions of its partition go on. Before, the storage error crashed the writer's batch, and
the batch's replay crashed again, for ever: every session of the partition stopped with it
(found by the fault tests: a full disk, tests/faults/test_disk_full.py, which covers a write
refused by the kernel; here, a session's file that cannot be opened)."""

import uuid
from pathlib import Path

from prometheus_client import REGISTRY

from tests.audio import chunked, tone_and_noise
from tests.pipeline import (
    Session,
    produce_interleaved,
    read_wav,
    recording_path,
    settings_for,
    wait_finalized,
)
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import SessionField, Topic
from voxbus.common.store.memory import InProcessStore


def _write_errors() -> float:
    return REGISTRY.get_sample_value("voxbus_writer_write_errors_total") or 0.0


async def test_a_session_whose_file_cannot_be_opened_fails_alone(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, "unwritable.", partitions=1)  # both sessions on one partition
    sessions = [
        Session(str(uuid.uuid4()), "pcm_s16le", 16000, 1, chunked(tone_and_noise(2.0, 16000).tobytes(), 3200))
        for _ in range(2)
    ]
    blocked, healthy = sessions
    settings.audio_storage_path.mkdir(parents=True)
    (settings.audio_storage_path / f"{blocked.session_id}.wav").mkdir()  # where its file would be
    errors_before = _write_errors()
    async with InProcessBus() as bus, InProcessStore() as store, recording_path(bus, store, settings):
        await produce_interleaved(bus, settings, sessions, to=Topic.AUDIO_PCM)
        failed = await wait_finalized(store, blocked.session_id, timeout=20)
        completed = await wait_finalized(store, healthy.session_id, timeout=20)
    assert failed[SessionField.STATUS] == "error", failed
    assert failed[SessionField.ERROR].startswith("the recording could not be written: [Errno 21]"), failed
    assert completed[SessionField.STATUS] == "completed", completed
    recorded, _ = read_wav(settings.audio_storage_path / completed[SessionField.FILE_PATH])
    assert recorded.tobytes() == b"".join(healthy.chunks)
    assert _write_errors() == errors_before + 1
