"""Kill the transcoder and the writer with SIGKILL mid-stream, restart them, and get files
identical to an uninterrupted run: no sample lost, none duplicated. Real Kafka, real Redis,
the services as separate processes (`voxbus serve …`)."""

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np

from tests.audio import chunked, encode, opus_packets, speech, tone_and_noise, wav_bytes
from tests.helpers import free_port
from tests.pipeline import Session, produce, read_wav, segment_paths, settings_for, wait_finalized
from voxbus.common.bus.kafka import KafkaBus
from voxbus.common.constants import SessionField
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint


class Service:
    """One `voxbus serve NAME` process that can be killed and started again."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path) -> None:
        self.name, self._env, self._log_dir = name, env, log_dir
        self._process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        with (self._log_dir / f"{self.name}-{self.starts}.log").open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "voxbus.cli", "serve", self.name, "--port", str(free_port())],
                env={**os.environ, **self._env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGKILL)
            self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()


async def test_sigkill_and_restart_mid_stream_gives_identical_files(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    prefix = f"crash-{uuid.uuid4().hex[:8]}."
    settings = settings_for(tmp_path, prefix, segment_seconds=1.5, partitions=2)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_endpoint.bootstrap_servers,
        "REDIS_URL": redis_endpoint.url,
        "TOPIC_PREFIX": prefix,
        "AUDIO_PARTITIONS": "2",
        "EGRESS_PARTITIONS": "2",
        "EVENTS_PARTITIONS": "2",
        "SEGMENT_SECONDS": "1.5",
        "AUDIO_STORAGE_PATH": str(settings.audio_storage_path),
        "HOST": "127.0.0.1",
    }
    sessions = [
        Session(
            str(uuid.uuid4()), "pcm_s16le", 16000, 1, chunked(tone_and_noise(8.0, 16000).tobytes(), 3200)
        ),
        Session(str(uuid.uuid4()), "opus", 16000, 1, opus_packets(speech(8.0, 16000), 16000)),
        Session(
            str(uuid.uuid4()),
            "mp3",
            16000,
            1,
            chunked(encode(speech(8.0, 44100, 2), 44100, container="mp3", codec="libmp3lame"), 1200),
        ),
        Session(str(uuid.uuid4()), "wav", 16000, 1, chunked(wav_bytes(speech(8.0, 44100), 44100), 8820)),
    ]
    transcoder = Service("transcoder", env, tmp_path)
    writer = Service("writer", env, tmp_path)
    async with KafkaBus(kafka_endpoint.bootstrap_servers) as bus, RedisStore(redis_endpoint.url) as store:
        await bus.create_topics(settings.topic_partitions())
        transcoder.start()
        writer.start()
        try:

            async def chaos() -> None:
                for delay, action in [
                    (2.5, writer.kill),
                    (0.5, writer.start),
                    (2.0, transcoder.kill),
                    (0.5, transcoder.start),
                    (2.0, writer.kill),
                    (0.0, transcoder.kill),
                    (0.5, writer.start),
                    (0.0, transcoder.start),
                ]:
                    await asyncio.sleep(delay)  # kills at set times while sessions stream in real time
                    action()

            paces = {s.session_id: 8.0 / len(s.chunks) for s in sessions}  # stream at about real time
            await asyncio.gather(
                chaos(), *(produce(bus, settings, s, pace=paces[s.session_id]) for s in sessions)
            )
            results = {s.session_id: await wait_finalized(store, s.session_id, timeout=150) for s in sessions}
        finally:
            transcoder.stop()
            writer.stop()

    assert (transcoder.starts, writer.starts) == (3, 3)
    root = settings.audio_storage_path
    for session in sessions:
        fields = results[session.session_id]
        assert fields[SessionField.STATUS] == "completed", session.codec
        whole, _ = read_wav(root / fields[SessionField.FILE_PATH])
        assert whole.tobytes() == session.expected_pcm(), (
            f"{session.codec}: file differs from an uninterrupted run"
        )
        segments = np.concatenate([read_wav(path)[0] for path in segment_paths(root, fields)])
        np.testing.assert_array_equal(segments, whole)
