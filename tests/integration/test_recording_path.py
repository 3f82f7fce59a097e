"""The recording path end to end: raw records → transcoder → PCM records → writer → WAV files.

Run embedded (in-process bus and store) and distributed (real Kafka and Redis).
"""

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiokafka.partitioner import murmur2

from tests.audio import chunked, encode, opus_packets, speech, tone_and_noise, wav_bytes
from tests.helpers import consume
from tests.pipeline import (
    Session,
    produce,
    read_wav,
    recording_path,
    segment_paths,
    settings_for,
    wait_finalized,
)
from voxbus.common.bus.base import Bus
from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import SessionField, Topic
from voxbus.common.records import SessionFinalized, decode
from voxbus.common.store.base import StateStore
from voxbus.common.store.memory import InProcessStore
from voxbus.common.store.redis import RedisStore

Backends = tuple[Bus, StateStore]


@pytest.fixture(params=["embedded", "distributed"])
async def backends(request: pytest.FixtureRequest) -> AsyncIterator[Backends]:
    if request.param == "embedded":
        yield InProcessBus(), InProcessStore()
        return
    kafka = request.getfixturevalue("kafka_endpoint")
    redis = request.getfixturevalue("redis_endpoint")
    async with KafkaBus(kafka.bootstrap_servers, linger_ms=2) as bus, RedisStore(redis.url) as store:
        yield bus, store


def sid() -> str:
    return str(uuid.uuid4())


async def test_95_seconds_become_a_whole_file_and_four_exact_segments(
    backends: Backends, tmp_path: Path, unique: str
) -> None:
    bus, store = backends
    settings = settings_for(tmp_path, f"rec-{unique}.")
    source = tone_and_noise(95.0, 16000)
    session = Session(sid(), "pcm_s16le", 16000, 1, chunked(source.tobytes(), 4096))
    async with recording_path(bus, store, settings):
        await produce(bus, settings, session)
        fields = await wait_finalized(store, session.session_id)

    root = settings.audio_storage_path
    whole, rate = read_wav(root / fields[SessionField.FILE_PATH])
    assert rate == 16000
    np.testing.assert_array_equal(whole, source)
    segments = [read_wav(path)[0] for path in segment_paths(root, fields)]
    assert [len(s) / 16000 for s in segments] == [30.0, 30.0, 30.0, 5.0]
    np.testing.assert_array_equal(np.concatenate(segments), source)
    assert fields[SessionField.STATUS] == "completed"
    assert float(fields[SessionField.DURATION_SECONDS]) == 95.0
    assert fields[SessionField.FILE_PATH] == f"{session.session_id}.wav"

    async with bus.group_consumer([settings.topic(Topic.EVENTS)], group_id=f"events-{unique}") as consumer:
        (record,) = await consume(consumer, 1)
    event = decode(record.key, record.value, record.headers)
    assert isinstance(event, SessionFinalized)
    assert (event.session_id, event.duration_seconds, len(event.segments)) == (session.session_id, 95.0, 4)


async def test_codecs_interleaved_on_the_bus_match_an_uninterrupted_decode(
    backends: Backends, tmp_path: Path, unique: str
) -> None:
    bus, store = backends
    settings = settings_for(tmp_path, f"codecs-{unique}.", segment_seconds=2.0, partitions=2)
    sessions = [
        Session(sid(), "wav", 16000, 1, chunked(wav_bytes(speech(6.0, 44100), 44100), 4096)),
        Session(sid(), "opus", 16000, 1, opus_packets(speech(6.0, 16000), 16000)),
        Session(
            sid(),
            "mp3",
            16000,
            1,
            chunked(encode(speech(6.0, 44100, 2), 44100, container="mp3", codec="libmp3lame"), 1000),
        ),
        Session(sid(), "mulaw", 8000, 1, chunked(bytes(range(256)) * 200, 160)),
    ]
    async with recording_path(bus, store, settings):
        for session in sessions:
            await produce(bus, settings, session)
        results = {s.session_id: await wait_finalized(store, s.session_id) for s in sessions}

    root = settings.audio_storage_path
    for session in sessions:
        fields = results[session.session_id]
        whole, rate = read_wav(root / fields[SessionField.FILE_PATH])
        assert rate == session.rate
        assert whole.tobytes() == session.expected_pcm(), session.codec
        segments = np.concatenate([read_wav(p)[0] for p in segment_paths(root, fields)])
        np.testing.assert_array_equal(segments, whole)


async def test_undecodable_session_fails_alone(backends: Backends, tmp_path: Path, unique: str) -> None:
    bus, store = backends
    settings = settings_for(tmp_path, f"bad-{unique}.", partitions=2)
    good, bad = same_partition_ids(2)
    source = tone_and_noise(3.0, 16000)
    good_session = Session(good, "pcm_s16le", 16000, 1, chunked(source.tobytes(), 4096))
    packets = opus_packets(speech(2.0, 16000), 16000)
    bad_session = Session(bad, "opus", 16000, 1, [*packets[:10], b"\xff\xff\xff\xff\x00\x01", *packets[10:]])
    async with recording_path(bus, store, settings):
        await produce(bus, settings, bad_session)
        await produce(bus, settings, good_session)
        bad_fields = await wait_finalized(store, bad)
        good_fields = await wait_finalized(store, good)

    assert bad_fields[SessionField.STATUS] == "error"
    assert "invalid Opus packet" in bad_fields[SessionField.ERROR]
    kept, _ = read_wav(settings.audio_storage_path / bad_fields[SessionField.FILE_PATH])
    assert len(kept) == 10 * 320  # what decoded before the bad packet is kept
    assert good_fields[SessionField.STATUS] == "completed"
    whole, _ = read_wav(settings.audio_storage_path / good_fields[SessionField.FILE_PATH])
    np.testing.assert_array_equal(whole, source)


async def test_two_writers_split_sessions_without_overlap(
    backends: Backends, tmp_path: Path, unique: str
) -> None:
    bus, store = backends
    settings = settings_for(tmp_path, f"split-{unique}.", segment_seconds=1.0, partitions=4)
    # two sessions on each of the 4 partitions: whichever 2 each writer holds, both get work
    # (8 random ids all fell on one writer's partitions about once in 130 runs)
    ids = [session_id for p in range(4) for session_id in same_partition_ids(2, partitions=4, partition=p)]
    sessions = [
        Session(
            session_id, "pcm_s16le", 16000, 1, chunked(tone_and_noise(2.0, 16000, seed=n).tobytes(), 3200)
        )
        for n, session_id in enumerate(ids)
    ]
    async with recording_path(bus, store, settings, writers=2):
        for session in sessions:
            await produce(bus, settings, session)
        results = {s.session_id: await wait_finalized(store, s.session_id) for s in sessions}

    finalized_by = {fields[SessionField.WRITER_POD] for fields in results.values()}
    assert finalized_by == {"writer-0", "writer-1"}, "both writers should have had partitions"
    for session in sessions:  # two writers on one session would have corrupted its file
        whole, _ = read_wav(settings.audio_storage_path / results[session.session_id][SessionField.FILE_PATH])
        assert whole.tobytes() == session.expected_pcm()


def same_partition_ids(count: int, partitions: int = 2, partition: int = 0) -> list[str]:
    """Session ids that land on the same partition (Kafka's partitioner, which both buses use)."""
    found: list[str] = []
    while len(found) < count:
        candidate = str(uuid.uuid4())
        if (murmur2(candidate.encode()) & 0x7FFFFFFF) % partitions == partition:
            found.append(candidate)
    return found
