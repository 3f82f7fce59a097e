"""A recording client as the existing ones are written: connect, stream chunks, read acks, close.

Two implementations of the same steps: aiohttp's client and the `websockets` library.
"""

import json
from typing import Any

import aiohttp
import websockets
from websockets.asyncio.client import connect

CLOSE = json.dumps({"type": "control", "action": "close_session"})


async def record_with_aiohttp(url: str, chunks: list[bytes], *, close: bool = True) -> dict[str, Any]:
    """Stream every chunk, wait for every ack, then close_session: the replies, by kind."""
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        hello = await ws.receive_json()
        for chunk in chunks:
            await ws.send_bytes(chunk)
        acks = [await ws.receive_json() for _ in chunks]
        closed = None
        if close:
            await ws.send_str(CLOSE)
            closed = await ws.receive_json(timeout=60)
            await ws.receive()
        return {"hello": hello, "acks": acks, "closed": closed, "close_code": ws.close_code}


async def record_with_websockets(url: str, chunks: list[bytes], *, close: bool = True) -> dict[str, Any]:
    async with connect(url.replace("http://", "ws://"), max_size=None) as ws:
        hello = json.loads(await ws.recv())
        for chunk in chunks:
            await ws.send(chunk)
        acks = [json.loads(await ws.recv()) for _ in chunks]
        closed = None
        code = None
        if close:
            await ws.send(CLOSE)
            closed = json.loads(await ws.recv())
            try:
                await ws.recv()
            except websockets.ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
        return {"hello": hello, "acks": acks, "closed": closed, "close_code": code}


RECORDERS = {"aiohttp": record_with_aiohttp, "websockets": record_with_websockets}
