"""Drive the recording path in-process: produce a session's raw records, run the transcoder and
writer consumer groups, wait (event-driven, on the state store) until the writer finalized."""

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

from voxbus.common.bus.base import Bus
from voxbus.common.constants import Key, SessionField, Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.records import AudioChunk, AudioFormat, BusMessage, SessionStart, SessionStop
from voxbus.common.settings import Settings
from voxbus.common.store.base import StateStore
from voxbus.transcoder.pipeline import SessionPipeline
from voxbus.transcoder.service import GROUP as TRANSCODER_GROUP
from voxbus.transcoder.worker import TranscodeHandler
from voxbus.writer.service import GROUP as WRITER_GROUP
from voxbus.writer.worker import WriteHandler


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    codec: str
    rate: int
    channels: int
    chunks: Sequence[bytes]

    def expected_pcm(self) -> bytes:
        """What an uninterrupted transcoder makes of the chunks: the reference for the files."""
        pipeline = SessionPipeline.for_codec(self.codec, rate=self.rate, channels=self.channels)
        return b"".join(pipeline.push(chunk) for chunk in self.chunks) + pipeline.finish()


def settings_for(
    tmp_path: Path, prefix: str, *, segment_seconds: float = 30.0, partitions: int = 4
) -> Settings:
    return Settings(
        audio_storage_path=tmp_path / "audio",
        topic_prefix=prefix,
        audio_partitions=partitions,
        egress_partitions=2,
        events_partitions=2,
        segment_seconds=segment_seconds,
    )


def session_messages(session: Session, *, to: Topic = Topic.AUDIO_RAW) -> Iterator[BusMessage]:
    """A session's start, chunks (seq 1…n) and stop, as ingest (or, to the PCM topic, the
    transcoder) would send them; each stamped with the time it is taken."""
    fmt = AudioFormat(codec=session.codec, rate=session.rate, channels=session.channels)
    sid = session.session_id
    yield SessionStart(session_id=sid, seq=0, ts_ns=time.time_ns(), format=fmt, protocol="test").to_message()
    position = 0  # on the PCM topic, chunks carry their frame offset as the transcoder's do
    for seq, chunk in enumerate(session.chunks, start=1):
        pos = position if to == Topic.AUDIO_PCM else None
        position += len(chunk) // (2 * session.channels)
        message = AudioChunk(session_id=sid, seq=seq, ts_ns=time.time_ns(), format=fmt, audio=chunk, pos=pos)
        yield message.to_message()
    stop = SessionStop(session_id=sid, seq=len(session.chunks) + 1, ts_ns=time.time_ns(), reason="test")
    yield stop.to_message()


async def produce(
    bus: Bus, settings: Settings, session: Session, *, pace: float = 0.0, to: Topic = Topic.AUDIO_RAW
) -> None:
    """A session's records, durable when this returns; with `pace`, each sent that many seconds
    after the one before was durable (a client streaming in real time)."""
    topic = settings.topic(to)
    for message in session_messages(session, to=to):
        delivery = await bus.send(topic, message)
        if pace:
            await delivery
            await asyncio.sleep(pace)  # a client streaming in real time
    await delivery  # the last: the ones before it on its partition are durable too


async def produce_interleaved(
    bus: Bus, settings: Settings, sessions: Sequence[Session], *, to: Topic = Topic.AUDIO_RAW
) -> None:
    """The sessions' records in turns, one of each session at a time, as concurrent clients would
    send them."""
    topic = settings.topic(to)
    for turn in itertools.zip_longest(*(session_messages(s, to=to) for s in sessions)):
        for message in turn:
            if message is not None:
                await bus.send_and_wait(topic, message)


@contextlib.asynccontextmanager
async def recording_path(
    bus: Bus, store: StateStore, settings: Settings, *, writers: int = 1
) -> AsyncIterator[list[WriteHandler]]:
    """Transcoder and writer consumer groups running as tasks for the block's duration."""
    await bus.create_topics(settings.topic_partitions())
    settings.audio_storage_path.mkdir(parents=True, exist_ok=True)
    raw, pcm, events = (settings.topic(t) for t in (Topic.AUDIO_RAW, Topic.AUDIO_PCM, Topic.EVENTS))
    transcoder = ConsumerLoop(
        bus,
        [raw],
        group_id=settings.consumer_group(TRANSCODER_GROUP),
        handler=TranscodeHandler(bus, store, pcm_topic=pcm),
    )
    handlers = [
        WriteHandler(
            bus,
            store,
            storage=settings.audio_storage_path,
            segment_seconds=settings.segment_seconds,
            events_topic=events,
            pod=f"writer-{n}",
        )
        for n in range(writers)
    ]
    writers_group = settings.consumer_group(WRITER_GROUP)
    loops = [ConsumerLoop(bus, [pcm], group_id=writers_group, handler=h) for h in handlers]
    tasks = [asyncio.create_task(transcoder.run(), name="test-transcoder")] + [
        asyncio.create_task(loop.run(), name=f"test-writer-{n}") for n, loop in enumerate(loops)
    ]
    try:
        await _all_assigned([transcoder, *loops], tasks)
        yield handlers
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for handler in handlers:
            await handler.close()


async def wait_finalized(store: StateStore, session_id: str, timeout: float = 60.0) -> dict[str, str]:
    key = Key.SESSION + session_id

    async def done() -> bool:
        return await store.hget(key, SessionField.FINALIZED) == "1"

    if not await store.wait_until(Key.SESSION_CHANNEL + session_id, done, timeout):
        raise AssertionError(f"session {session_id} was not finalized within {timeout} s")
    return await store.hgetall(key)


def read_wav(path: Path) -> tuple[npt.NDArray[np.int16], int]:
    data, rate = soundfile.read(path, dtype="int16", always_2d=True)
    return data, rate


def segment_paths(root: Path, fields: dict[str, str]) -> list[Path]:
    return [root / name for name in json.loads(fields[SessionField.SEGMENTS])]


async def _all_assigned(loops: Sequence[ConsumerLoop], tasks: Sequence[asyncio.Task[None]]) -> None:
    """Wait until every group member holds partitions, so work is split from the first record."""
    deadline = time.monotonic() + 60
    while not all(loop.assignment() for loop in loops):
        for task in tasks:
            if task.done():
                task.result()  # a loop that died: raise its error here
        if time.monotonic() > deadline:
            raise AssertionError("consumer groups did not assign partitions within 60 s")
        await asyncio.sleep(0.05)  # the loops join their groups in their own tasks; nothing announces it
