"""The baseline for bench/telephony.py: a bare aiohttp server that answers `/vonage/answer` with an
NCCO connecting the call to its own `/ws/vonage`, and on each media socket sends the caller's
frames back, in order, one every 20 ms against an accumulated monotonic deadline that starts
`DELAY_MS` after the first frame arrived; nothing else.

Usage: python bench/bare_pacer.py PORT DELAY_MS
"""

import asyncio
import collections
import contextlib
import sys

from aiohttp import WSMsgType, web

FRAME_SECONDS = 0.02
DELAY = web.AppKey("delay", float)


async def answer(request: web.Request) -> web.Response:
    call = request.query.get("uuid", "")
    endpoint = {
        "type": "websocket",
        "uri": f"ws://{request.host}/ws/vonage?call={call}",
        "content-type": "audio/l16;rate=16000",
        "headers": {"call_uuid": call},
    }
    return web.json_response([{"action": "connect", "endpoint": [endpoint]}])


async def media(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    frames: collections.deque[bytes] = collections.deque()
    arrived = asyncio.Event()

    async def pace() -> None:
        await arrived.wait()
        deadline = loop.time() + request.app[DELAY]
        while True:
            if (wait := deadline - loop.time()) > 0:
                await asyncio.sleep(wait)
            while not frames:  # the caller's frame is late: send it when it comes, then catch up
                arrived.clear()
                await arrived.wait()
            await ws.send_bytes(frames.popleft())
            deadline += FRAME_SECONDS

    pacer = asyncio.create_task(pace(), name="bare-pacer")
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                frames.append(message.data)
                arrived.set()
    finally:
        pacer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pacer
    return ws


if __name__ == "__main__":
    app = web.Application()
    app[DELAY] = int(sys.argv[2]) / 1000
    app.router.add_get("/vonage/answer", answer)
    app.router.add_get("/ws/vonage", media)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
