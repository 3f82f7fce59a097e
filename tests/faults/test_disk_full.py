"""The writer's storage refusing to take more, while 20 sessions stream: the session whose file
cannot grow ends `error` with the reason, the others complete with every acked chunk, and the
counter the VoxbusRecordingWriteErrors alert reads moves.

A full disk needs a filesystem of the test's own (a small tmpfs or loop device: root only), so
the writer runs with RLIMIT_FSIZE instead (set in the child before it starts): the kernel refuses
to grow any file of that process past the limit, and a write that would fails with EFBIG, "File
too large", where a full disk fails with ENOSPC. Both reach the writer as the OSError of a write
or a flush; which one it is changes nothing in how the writer handles it. The limit is per file:
the one session sent well past it fails, the 20 whose files stay below it do not.
"""

import asyncio
import json
import resource
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import CLOSE
from tests.faults.driver import FaultRun
from tests.servers import Process, cluster, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

SECONDS = 20.0  # each of the 20 sessions: 640 KB of PCM, below the limit
FILE_SIZE_LIMIT = 1_000_000
BIG_CHUNK = bytes(range(256)) * 256  # 64 KiB: 2 s of 16 kHz mono
BIG_CHUNKS = 24  # 1.5 MiB: past the limit


def _limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


async def _stream_past_the_limit(http: aiohttp.ClientSession, ingest: Process) -> dict[str, object]:
    """A session sent past the writer's file-size limit, as fast as its acks come; the reply that
    ended it (`Session failed` comes in place of an ack, or as the close's reply)."""
    async with http.ws_connect(f"{ingest.url}/api/ws/audio?format=pcm&sample_rate=16000") as ws:
        await ws.receive_json(timeout=30)
        for _ in range(BIG_CHUNKS):
            await ws.send_bytes(BIG_CHUNK)
            reply = await ws.receive_json(timeout=30)
            if reply["message"] != "Chunk processed successfully":
                return dict(reply)
        await ws.send_str(CLOSE)
        return dict(await ws.receive_json(timeout=60))


async def _counter(http: aiohttp.ClientSession, process: Process, name: str) -> float:
    async with http.get(f"{process.url}/metrics") as response:
        text = await response.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"{process.name} exports no {name}")


@pytest.mark.timeout(150)
async def test_a_full_disk_fails_the_session_it_stops_and_no_other(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, fault_seed: int
) -> None:
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("disk"))
    run = FaultRun(tmp_path, seed=fault_seed, seconds=SECONDS)
    writer = Process("writer", env, tmp_path, preexec_fn=_limit_file_size)
    writer.start()
    try:
        async with (
            cluster(env, tmp_path, ingests=2, services=("transcoder",)) as processes,
            aiohttp.ClientSession() as http,
        ):
            await writer.ready()
            outcome, failed = await asyncio.gather(
                run.stream([*processes, writer], []), _stream_past_the_limit(http, processes[0])
            )
            async with http.get(f"{processes[1].url}/api/audio/sessions/{failed['session_id']}") as response:
                info = await response.json()
            errors = await _counter(http, writer, "voxbus_writer_write_errors_total")
    finally:
        writer.stop()
    outcome.check()
    assert failed["message"] == "Session failed", outcome.report(f"past the limit: {failed}")
    assert "File too large" in str(failed["error"]), outcome.report(f"past the limit: {failed}")
    assert (info["status"], info["error"]) == ("error", failed["error"]), json.dumps(info)
    assert errors >= 1, outcome.report(f"voxbus_writer_write_errors_total is {errors}")
