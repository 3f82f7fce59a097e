"""An Exotel Voicebot stream (or, `camel=True`, a Twilio Media Stream) for tests, as
docs/protocols/exotel.md and twilio.md say the carriers behave: it opens the socket, sends
`connected` and `start` (Exotel: snake_case, numbers as strings, `media` about every 100 ms;
Twilio: camelCase, μ-law, `media` every 20 ms) at real time, `dtmf`, `mark` and `stop`. What
voxbus sends back is kept with the monotonic time each message arrived.

Only Exotel's cloud is simulated; voxbus is the real thing, over real sockets.
"""

import asyncio
import base64
import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

CHUNK_SECONDS = 0.1


@dataclass
class ExotelStream:
    ws: aiohttp.ClientWebSocketResponse
    stream_sid: str
    rate: int
    sample_bytes: int
    media: list[tuple[float, bytes]] = field(default_factory=list)  # (arrived, payload) from voxbus
    texts: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # every message from voxbus
    sent_at: list[float] = field(default_factory=list)  # when each media chunk was sent
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    reader: "asyncio.Task[None] | None" = None
    sequence: int = 1
    next_send: float = 0.0
    camel: bool = False
    chunk_seconds: float = CHUNK_SECONDS

    async def read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                body = json.loads(message.data)
                now = time.monotonic()
                self.texts.append((now, body))
                if body.get("event") == "media":
                    self.media.append((now, base64.b64decode(body["media"]["payload"])))
                self.arrived.set()

    async def send(self, event: str, **fields: Any) -> None:
        self.sequence += 1
        body = {
            "event": event,
            "sequence_number": str(self.sequence),
            "stream_sid": self.stream_sid,
            **fields,
        }
        await self.ws.send_str(json.dumps(body))

    async def speak(self, audio: bytes) -> None:
        """`audio` in media messages of `chunk_seconds` at real time (an accumulated deadline)."""
        size = int(self.rate * self.chunk_seconds) * self.sample_bytes
        loop = asyncio.get_running_loop()
        deadline = max(self.next_send, loop.time())
        for start in range(0, len(audio), size):
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            chunk = len(self.sent_at) + 1
            self.sent_at.append(time.monotonic())
            payload = base64.b64encode(audio[start : start + size]).decode()
            await self.send(
                "media", media={"chunk": str(chunk), "timestamp": str(chunk * 100), "payload": payload}
            )
            deadline += self.chunk_seconds
        self.next_send = deadline

    async def dtmf(self, digit: str) -> None:
        await self.send("dtmf", dtmf={"digit": digit, "duration": "100"})

    async def mark(self, name: str) -> None:
        await self.send("mark", mark={"name": name})

    async def until(self, check: Any, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.arrived.clear()
                await self.arrived.wait()

    def marks(self) -> list[str]:
        return [body["mark"]["name"] for _, body in self.texts if body.get("event") == "mark"]

    def ids(self) -> set[str]:
        """The stream id keys voxbus used (Exotel: stream_sid; Twilio: streamSid)."""
        return {key for _, body in self.texts for key in body if key.lower().startswith("stream")}

    async def stop(self) -> None:
        ids = {"callSid": "C", "accountSid": "A"} if self.camel else {"call_sid": "C", "account_sid": "A"}
        await self.send("stop", stop={**ids, "reason": "callended"})
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader
        await self.ws.close()


async def open_stream(
    http: aiohttp.ClientSession,
    base: str,
    call_sid: str,
    *,
    rate: int = 8000,
    mulaw: bool = False,
    mode: str | None = None,
    headers: dict[str, str] | None = None,
) -> ExotelStream:
    ws_base = base.replace("http://", "ws://")
    ws = await http.ws_connect(f"{ws_base}/ws/exotel?sample-rate={rate}", headers=headers or {})
    stream = ExotelStream(
        ws=ws, stream_sid=f"ST-{call_sid}", rate=8000 if mulaw else rate, sample_bytes=1 if mulaw else 2
    )
    stream.reader = asyncio.create_task(stream.read(), name="exotel-reader")
    await ws.send_str(json.dumps({"event": "connected"}))
    start = {
        "stream_sid": stream.stream_sid,
        "call_sid": call_sid,
        "account_sid": "A1",
        "from": "+919800000000",
        "to": "+918000000000",
        "custom_parameters": {"mode": mode} if mode else {},
        "media_format": {
            "encoding": "audio/x-mulaw" if mulaw else "audio/x-raw",
            "sample_rate": str(stream.rate),
            "bit_rate": "8" if mulaw else "16",
        },
    }
    await stream.send("start", start=start)
    return stream


async def open_twilio_stream(
    http: aiohttp.ClientSession,
    url: str,
    call_sid: str,
    parameters: dict[str, str],
    headers: dict[str, str] | None = None,
) -> ExotelStream:
    """A Twilio Media Stream to `url` (the TwiML's `<Stream url>`), with the TwiML's parameters."""
    ws = await http.ws_connect(url, headers=headers or {})
    stream = ExotelStream(
        ws=ws, stream_sid=f"MZ-{call_sid}", rate=8000, sample_bytes=1, camel=True, chunk_seconds=0.02
    )
    stream.reader = asyncio.create_task(stream.read(), name="twilio-reader")
    await ws.send_str(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    start = {
        "accountSid": "AC1",
        "streamSid": stream.stream_sid,
        "callSid": call_sid,
        "tracks": ["inbound"],
        "customParameters": parameters,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    await stream.send("start", start=start)
    return stream
