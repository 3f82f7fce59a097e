"""The baseline for bench/echo_latency.py: a bare aiohttp WebSocket on /ws/audio that sends every
binary message back, in order, `?delay_ms=` (default 0) after it arrived, and does nothing else."""

import asyncio
import sys

from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    delay = int(request.query.get("delay_ms", "0")) / 1000
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    # The delay is the same for every message, so due times arrive in order: one sender per socket.
    pending: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def send_back() -> None:
        while True:
            due, data = await pending.get()
            await asyncio.sleep(due - loop.time())
            await ws.send_bytes(data)

    sender = asyncio.create_task(send_back(), name="bare-echo-sender")
    try:
        async for message in ws:
            if message.type == WSMsgType.BINARY:
                pending.put_nowait((loop.time() + delay, message.data))
    finally:
        sender.cancel()
        await asyncio.wait({sender}, timeout=5)
    return ws


if __name__ == "__main__":
    app = web.Application()
    app.router.add_get("/ws/audio", echo)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
