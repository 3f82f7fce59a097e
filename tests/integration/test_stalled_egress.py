"""A client that stops reading holds up no other client's egress. Each pod has one egress router,
which hands every socket its echoes in turn; a send to a client whose send buffer is full waits
until that client reads, and every socket of the pod waited with it (found by the fault tests,
tests/faults/test_stalled_client.py: a stalled client on a pod stopped every echo there until its
idle timeout, 300 s by default). Such a client's egress is dropped and counted instead."""

import asyncio
import os
from pathlib import Path

import aiohttp

from tests.faults.probes import echo_answers, stalling_connector
from tests.helpers import eventually
from tests.servers import Process, up_process

ECHO_URL = "/api/ws/audio?format=pcm&sample_rate=16000&echo=true"
CHUNK = os.urandom(8000)  # 250 ms of 16 kHz mono


async def _dropped(http: aiohttp.ClientSession, server: Process) -> float:
    async with http.get(f"{server.url}/metrics") as response:
        text = await response.text()
    prefix = 'voxbus_ingest_egress_dropped_bytes_total{protocol="session"} '
    return next(float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix))


async def test_a_client_that_stops_reading_holds_up_no_other_clients_echo(tmp_path: Path) -> None:
    async with (
        up_process(tmp_path, ECHO_DELAY_MS="0") as server,
        aiohttp.ClientSession(connector=stalling_connector()) as stalled,
        aiohttp.ClientSession() as http,
        stalled.ws_connect(f"{server.url}{ECHO_URL}") as ws,
    ):
        await ws.receive_json(timeout=30)
        # never reading: its acks and echoes back up, until the server stops reading it too
        for _ in range(20_000):
            try:
                async with asyncio.timeout(2):
                    await ws.send_bytes(CHUNK)
            except TimeoutError:
                break
        else:
            raise AssertionError("the server read 160 MB from a client that read nothing")

        try:
            async with asyncio.timeout(15):
                await echo_answers(http, server)
        except TimeoutError:
            raise AssertionError("another client's echo waited behind the stalled client") from None

        async def dropping() -> bool:
            return await _dropped(http, server) > 0

        await eventually(dropping, what="egress to the stalled client dropped and counted", timeout=10)
        assert await _dropped(http, server) > 0  # counted where an operator looks: /metrics
