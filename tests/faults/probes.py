"""Clients the fault tests check the services with. After the faults, the services that are not
on the recording path do their work again: a new echo session hears its chunks back; a new Vonage
call's digits reach its call record through `voxbus.events` and the telephony consumer group. And
the connector of a client that will stop reading."""

import json
import socket
import uuid
from typing import Any

import aiohttp

from tests.helpers import eventually
from tests.servers import Process
from tests.vonage_carrier import VonageCarrier

_CHUNK = bytes(range(256)) * 12 + b"\x00" * 128  # 3200 bytes: 100 ms of 16 kHz mono PCM
_CHUNKS = 5


async def echo_answers(http: aiohttp.ClientSession, ingest: Process) -> None:
    """A session with echo hears each of its chunks back once, in order."""
    sent = [bytes([n]) + _CHUNK[1:] for n in range(_CHUNKS)]
    url = f"{ingest.url}/api/ws/audio?format=pcm&sample_rate=16000&echo=true"
    async with http.ws_connect(url) as ws:
        greeting = await ws.receive_json(timeout=30)
        assert greeting.get("message") == "Audio session created", greeting
        for chunk in sent:
            await ws.send_bytes(chunk)
        echoed: list[bytes] = []
        acks = 0
        while len(echoed) < _CHUNKS or acks < _CHUNKS:
            message = await ws.receive(timeout=30)
            if message.type == aiohttp.WSMsgType.BINARY:
                echoed.append(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                body = json.loads(message.data)
                assert body.get("message") == "Chunk processed successfully", body
                acks += 1
            else:
                raise AssertionError(f"the echo session ended before its echoes came: {message}")
        assert echoed == sent, "the echo service sent back other audio than the session's"


async def telephony_answers(http: aiohttp.ClientSession, telephony: Process, ingest: Process) -> None:
    """A call answered by `telephony`, its media socket on `ingest`: the digits pressed on it are
    in its call record."""
    carrier = VonageCarrier(http, [telephony.url])
    call_id = f"FAULT-{uuid.uuid4()}"
    line = await carrier.connect(await carrier.answer(call_id), via=ingest.url)
    try:
        for digit in "42":
            await line.dtmf(digit)

        async def digits_recorded() -> bool:
            async with http.get(f"{telephony.url}/api/calls/{call_id}") as response:
                return response.status == 200 and (await response.json()).get("dtmf") == "42"

        await eventually(digits_recorded, what=f"the digits of call {call_id} in its record", timeout=30)
    finally:
        await line.hang_up()


def stalling_connector() -> aiohttp.TCPConnector:
    """For a client that will stop reading: its socket's receive buffer is a few KB, so what the
    server sends it backs up at once rather than after the kernel's megabytes."""

    def small_receive_buffer(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=kind, proto=proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return sock

    return aiohttp.TCPConnector(socket_factory=small_receive_buffer)
