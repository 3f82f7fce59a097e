"""A few minutes of what clients do, against a running voxbus (e.g. `voxbus stack up`), then the
dashboards drawn from its Prometheus: how the README's pictures are made.

    uv run voxbus stack up --port 18800 --prometheus-port 18890
    uv run python -m tests.cluster_load http://127.0.0.1:18800 --prometheus http://127.0.0.1:18890 \\
        --seconds 240 --pictures docs/images

Concurrently: session streams of speech at real time (recorded, closed), Exotel calls that record
and echo (with a message voxbus rejects), Vonage, Twilio and Exotel status webhooks, and now and
then a connection voxbus refuses.
"""

import argparse
import asyncio
import itertools
import json
import logging
import time
from pathlib import Path

import aiohttp

from tests.audio import speech
from tests.dashboard_pictures import Window, draw, fetch, peaks
from tests.exotel_carrier import open_stream
from voxbus.devinfra.dashboards import DASHBOARDS

log = logging.getLogger("cluster_load")
CHUNK_SECONDS = 0.1
SESSION_SECONDS = 20.0
CALL_SECONDS = 8.0
VONAGE_STATUSES = ("started", "ringing", "answered", "completed")


async def sessions(http: aiohttp.ClientSession, base: str, until: float) -> None:
    audio = speech(SESSION_SECONDS, 16000).tobytes()
    size = int(16000 * CHUNK_SECONDS) * 2
    url = f"{base.replace('http', 'ws')}/api/ws/audio?format=pcm&sample_rate=16000"
    while time.time() < until:
        async with http.ws_connect(url) as ws:
            await ws.receive_json()
            for start in range(0, len(audio), size):
                await ws.send_bytes(audio[start : start + size])
                await ws.receive_json()
                await asyncio.sleep(CHUNK_SECONDS)  # a microphone's pace
            await ws.send_str(json.dumps({"type": "control", "action": "close_session"}))
            closed = await ws.receive_json(timeout=60)
        log.info("session %s %s", closed.get("session_id"), closed.get("status"))


async def exotel_call(http: aiohttp.ClientSession, base: str, call_id: str, seconds: float) -> bytes:
    """An Exotel call that records and echoes, with a message voxbus rejects (the carrier sends
    JSON text, not binary: the call goes on), then its status callback; the audio echoed."""
    stream = await open_stream(http, base, call_id, mode="record+echo")
    await stream.speak(speech(seconds, 8000).tobytes())
    await stream.mark("end")
    await stream.until(lambda: "end" in stream.marks(), timeout=30)  # after its echo
    await stream.ws.send_bytes(b"\x00\x01")
    await stream.stop()
    status = {"CallSid": call_id, "Status": "completed", "DateUpdated": "2026-12-02 10:00:09"}
    async with http.post(f"{base}/exotel/status", data=status) as response:
        response.raise_for_status()
    return b"".join(payload for _, payload in stream.media)


async def twilio_status(http: aiohttp.ClientSession, base: str, call_id: str) -> None:
    async with http.post(
        f"{base}/twilio/status", data={"CallSid": call_id, "CallStatus": "completed"}
    ) as response:
        response.raise_for_status()


async def refused_connection(http: aiohttp.ClientSession, base: str) -> None:
    """A session asked for in a format voxbus does not take: an error, then close code 1008."""
    async with http.ws_connect(f"{base.replace('http', 'ws')}/api/ws/audio?format=bogus") as ws:
        assert "error" in await ws.receive_json()
        assert (await ws.receive()).data == 1008


async def calls(http: aiohttp.ClientSession, base: str, until: float) -> None:
    for n in itertools.count():
        if time.time() >= until:
            return
        await exotel_call(http, base, f"EXC-LOAD-{n}", CALL_SECONDS)
        log.info("call %s done", n)


async def webhooks(http: aiohttp.ClientSession, base: str, until: float) -> None:
    for n in itertools.count():
        if time.time() >= until:
            return
        for status in VONAGE_STATUSES:
            event = {"uuid": f"VON-LOAD-{n}", "status": status, "timestamp": "2026-12-02T10:00:00Z"}
            async with http.post(f"{base}/vonage/event", json=event) as response:
                response.raise_for_status()
        await twilio_status(http, base, f"CA-LOAD-{n}")
        await refused_connection(http, base)
        await asyncio.sleep(5)


async def main(base: str, prometheus: str, seconds: float, pictures: Path | None) -> None:
    started = time.time()
    until = started + seconds
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(
            *(sessions(http, base, until) for _ in range(3)),
            calls(http, base, until),
            webhooks(http, base, until),
        )
        if pictures is not None:
            await asyncio.to_thread(pictures.mkdir, parents=True, exist_ok=True)
            for dashboard in DASHBOARDS:
                path = pictures / f"dashboard-{dashboard.file_name.removesuffix('.json')}.png"
                window = Window(started, time.time(), 5.0)
                panels = await fetch(http, prometheus, dashboard, window)
                await draw(
                    dashboard, panels, window, path, load=f"{seconds / 60:g} minutes of tests.cluster_load"
                )
                empty = [title for title, peak in peaks(panels).items() if peak is None]
                log.info("%s: %s", path, f"no data in {empty}" if empty else "every panel drawn")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("base", help="voxbus's URL (the load balancer's)")
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--pictures", type=Path, help="draw the dashboards into this folder afterwards")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    asyncio.run(main(args.base, args.prometheus, args.seconds, args.pictures))
