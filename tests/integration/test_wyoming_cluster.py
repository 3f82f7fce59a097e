"""Wearables against separate `voxbus serve` processes over real Kafka and Redis: a wearable whose
socket drops mid-stream resumes on another ingest instance and loses nothing that was accepted;
the `wyoming` package streams to an ingest instance's TCP port."""

from pathlib import Path

import aiohttp
import numpy as np

from tests.audio import speech
from tests.helpers import free_port
from tests.pipeline import read_wav, segment_paths, wait_finalized
from tests.servers import Process, cluster, isolated_env, topic_prefix
from tests.wearable import (
    RATE,
    STOP,
    event,
    omi_packets,
    record_over_tcp,
    reference_decode,
    send_chunks,
    start,
)
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint


async def test_a_wearable_dropped_mid_stream_resumes_on_another_ingest_and_loses_nothing(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("wear"))
    packets = omi_packets(40.0)  # two segments' worth
    async with (
        cluster(env, tmp_path, ingests=2) as (first, second, *_),
        RedisStore(env["REDIS_URL"]) as store,
        aiohttp.ClientSession() as http,
    ):
        ws = await http.ws_connect(f"{first.url}/ws")
        await ws.send_str(start(format="opus"))
        session_id = (await event(ws))["data"]["session_id"]
        await send_chunks(ws, packets[:1200])
        # the phone loses its connection: no audio-stop, no close frame
        transport = ws._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()
        async with http.ws_connect(f"{second.url}/ws") as resumed_ws:
            await resumed_ws.send_str(start(format="opus", session_id=session_id))
            resumed = (await event(resumed_ws))["data"]
            assert resumed["session_id"] == session_id
            kept = resumed["chunk_count"]
            assert 0 < kept <= 1200
            await send_chunks(resumed_ws, packets[kept:])
            await resumed_ws.send_str(STOP)
            stopped = (await event(resumed_ws))["data"]
        assert stopped["chunk_count"] == len(packets)
        fields = await wait_finalized(store, session_id)
    recorded = read_wav(tmp_path / "audio" / fields["file_path"])[0][:, 0]
    assert np.array_equal(recorded, reference_decode(packets))
    segments = [read_wav(path)[0][:, 0] for path in segment_paths(tmp_path / "audio", fields)]
    assert [len(segment) / RATE for segment in segments] == [30.0, 10.0]
    assert np.array_equal(np.concatenate(segments), recorded)


async def test_the_wyoming_package_streams_to_an_ingest_instances_tcp_port(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    tcp_port = free_port()
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("weartcp"))
    pcm = speech(2.0, RATE)
    async with (
        cluster(env, tmp_path, ingests=0) as _,
        RedisStore(env["REDIS_URL"]) as store,
    ):
        ingest = Process("ingest", {**env, "WYOMING_PORT": str(tcp_port)}, tmp_path)
        ingest.start()
        try:
            await ingest.ready()
            started, stopped = await record_over_tcp(tcp_port, pcm, 1600)
            assert stopped.data["chunk_count"] == 20
            fields = await wait_finalized(store, started.data["session_id"])
        finally:
            ingest.stop()
    recorded = read_wav(tmp_path / "audio" / fields["file_path"])[0][:, 0]
    assert np.array_equal(recorded, pcm[:, 0])
