"""A wearable for tests: Omi-style Opus packets from libopus, their reference decode, and a `/ws`
client that speaks Wyoming events as the devices' phone apps do."""

import json
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import opuslib

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
