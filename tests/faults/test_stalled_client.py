"""A client that stops reading, on a pod where 20 other sessions stream: the server's buffers for
it stay bounded (the pod's memory flat), the pod goes on serving the others (their acks, and the
echoes of a session of its own), and the stalled connection is ended at the idle timeout, its
session stopped with the reason `idle`."""

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.faults.driver import Fault, FaultRun, pod_name
from tests.faults.probes import echo_answers, stalling_connector
from tests.helpers import eventually
from tests.servers import Process, cluster, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

IDLE_SECONDS = 5.0  # CONNECTION_TIMEOUT_SECONDS: a socket silent this long is ended
CHUNK = os.urandom(8000)  # 250 ms of 16 kHz audio, sent as fast as the server takes it
MEMORY_BOUND_BYTES = 40 * 1024 * 1024  # what the pod's RSS may grow by while the client is stalled
# the server stops reading once its buffers to the client are full (the kernel's, then 256 chunks
# awaiting acks): a few seconds for a client that sends as fast as it can
STOPS_READING_SECONDS = 30.0


def _rss(process: Process) -> int:
    if process.process is None:
        raise AssertionError(f"{process.name} is not running")
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/<pid>/status")


@pytest.mark.timeout(150)
async def test_a_client_that_stops_reading_is_bounded_and_ended_while_the_others_go_on(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint, fault_seed: int
) -> None:
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("stall"),
        CONNECTION_TIMEOUT_SECONDS=str(IDLE_SECONDS),
        ECHO_DELAY_MS="0",
    )
    run = FaultRun(tmp_path, seed=fault_seed, seconds=20.0)
    seen: dict[str, Any] = {}

    async def stall(fault: Fault) -> str:
        """Open a session with echo, then send without ever reading until the server stops
        reading too; while it is stalled, a session of the same pod hears its echoes; then wait
        for the server to end the stalled session."""
        pod = run.processes[fault.target]
        rss = [_rss(pod)]
        connector = stalling_connector()
        async with (
            aiohttp.ClientSession(connector=connector) as stalled,
            aiohttp.ClientSession() as http,
            stalled.ws_connect(f"{pod.url}/api/ws/audio?format=pcm&sample_rate=16000&echo=true") as ws,
        ):
            session_id = (await ws.receive_json(timeout=30))["session_id"]
            sent, began = 0, run.clock()
            while run.clock() - began < STOPS_READING_SECONDS:  # never reading from here on
                try:
                    async with asyncio.timeout(2):
                        await ws.send_bytes(CHUNK)
                except (TimeoutError, ConnectionError):
                    break  # the server no longer reads what we send
                sent += 1
                rss.append(_rss(pod))
            else:
                raise AssertionError(f"the server read on for {STOPS_READING_SECONDS} s ({sent} chunks)")
            seen.update(session_id=session_id, sent=sent, blocked=run.clock() - began)
            await echo_answers(http, pod)  # the pod's other sockets get their egress meanwhile
            seen["echo"] = run.clock() - began

            async def stopped_idle() -> bool:
                rss.append(_rss(pod))
                async with http.get(f"{pod.url}/api/audio/sessions/{session_id}") as response:
                    info = await response.json()
                seen["info"] = info
                return bool(info.get("status") == "completed" and info.get("close_reason") == "idle")

            await eventually(stopped_idle, what="the stalled session stopped idle", timeout=60, interval=0.5)
            seen["rss"] = rss
            with contextlib.suppress(ConnectionError):
                await ws.close()
        return (
            f"the server stopped reading after {sent} chunks, {seen['blocked']:.1f}s in; a session of the "
            f"pod heard its echoes {seen['echo']:.1f}s in; stopped idle {run.clock() - began:.1f}s in; "
            f"the pod's RSS grew by at most {(max(rss) - rss[0]) / 2**20:.1f} MiB"
        )

    async with cluster(env, tmp_path, ingests=2, services=("transcoder", "writer", "echo")) as processes:
        stalled_pod = pod_name(next(process for process in processes if process.name == "ingest"))
        faults = run.schedule([("stall", stalled_pod)], between=(2.0, 4.0), hold=(0.0, 0.0))
        outcome = await run.stream(processes, faults, injectors={"stall": stall})
    outcome.check()
    rss = seen["rss"]
    growth = max(rss) - rss[0]
    assert growth < MEMORY_BOUND_BYTES, outcome.report(
        f"the pod's RSS grew by {growth / 2**20:.1f} MiB while a client was stalled ({seen})"
    )
