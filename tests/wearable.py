"""A wearable for tests: Omi-style Opus packets from libopus, their reference decode, and a `/ws`
client that speaks Wyoming events as the devices' phone apps do."""

import asyncio
import json
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import opuslib
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from tests.audio import speech

RATE = 16000
FRAME = 320  # 20 ms at 16 kHz
OPUS_MAX_FRAME = 1920  # 120 ms at 16 kHz: the largest packet a decoder is asked for
FORMAT = {"rate": RATE, "width": 2, "channels": 1}


def omi_packets(seconds: float) -> list[bytes]:
    """espeak-ng speech as an Omi device sends it: libopus, 20 ms frames at 16 kHz mono,
    restricted low-delay (CELT) at 32 kbit/s."""
    samples = speech(seconds, RATE)
    encoder = opuslib.Encoder(RATE, 1, opuslib.APPLICATION_RESTRICTED_LOWDELAY)
    encoder.bitrate = 32000
    usable = len(samples) - len(samples) % FRAME
    return [encoder.encode(samples[i : i + FRAME].tobytes(), FRAME) for i in range(0, usable, FRAME)]


def silence_packets(count: int) -> list[bytes]:
    """Digital silence in restricted low-delay mode: libopus makes each a 3-byte packet, the size
    of the BLE header some SDKs prefix."""
    encoder = opuslib.Encoder(RATE, 1, opuslib.APPLICATION_RESTRICTED_LOWDELAY)
    encoder.bitrate = 32000
    return [encoder.encode(b"\x00" * FRAME * 2, FRAME) for _ in range(count)]


def reference_decode(packets: list[bytes]) -> npt.NDArray[np.int16]:
    """What libopus makes of the packets, in order, with one decoder (its state carried)."""
    decoder = opuslib.Decoder(RATE, 1)
    return np.frombuffer(b"".join(decoder.decode(packet, OPUS_MAX_FRAME) for packet in packets), np.int16)


def chunk_header(payload: bytes, **data: Any) -> str:
    """An audio-chunk header as wearable apps send it over WebSocket (trailing newline and all)."""
    return (
        json.dumps({"type": "audio-chunk", "data": {**FORMAT, **data}, "payload_length": len(payload)}) + "\n"
    )


def start(**data: Any) -> str:
    return json.dumps({"type": "audio-start", "data": {**FORMAT, **data}})


STOP = json.dumps({"type": "audio-stop", "data": {"timestamp": None}})


async def event(ws: aiohttp.ClientWebSocketResponse, timeout: float = 30.0) -> dict[str, Any]:
    """The next event the server sends."""
    message = await ws.receive(timeout=timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, f"expected an event, got {message.type}: {message.data!r}"
    decoded: dict[str, Any] = json.loads(message.data)
    return decoded


async def send_chunks(ws: aiohttp.ClientWebSocketResponse, packets: list[bytes], **data: Any) -> None:
    for packet in packets:
        await ws.send_str(chunk_header(packet, **data))
        await ws.send_bytes(packet)


async def record_over_tcp(
    port: int, pcm: npt.NDArray[np.int16], samples_per_chunk: int
) -> tuple[Event, Event]:
    """`pcm` (16 kHz mono) through the `wyoming` package's TCP client, one session: its
    session-started and session-stopped events."""
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(AudioStart(rate=RATE, width=2, channels=1).event())
        started = await client.read_event()
        assert started is not None and started.type == "session-started", started
        for i in range(0, len(pcm), samples_per_chunk):
            audio = pcm[i : i + samples_per_chunk].tobytes()
            await client.write_event(AudioChunk(rate=RATE, width=2, channels=1, audio=audio).event())
        await client.write_event(AudioStop().event())
        stopped = await asyncio.wait_for(client.read_event(), 30)
    assert stopped is not None
    return started, stopped
