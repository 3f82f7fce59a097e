"""A Vonage carrier for tests, behaving as docs/protocols/vonage.md says Vonage does: it calls the
answer webhook, follows the NCCO's connect action to the media socket (signing the request when
the NCCO asks), sends `websocket:connected` and 20 ms L16 frames at real-time pace, presses DTMF
keys, and posts status events (signed with the secret when it has one). What the socket sends
back is kept with the monotonic time each message arrived.

Only Vonage's cloud is simulated; voxbus is the real thing, over real sockets.
"""

import asyncio
import contextlib
import hashlib
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import jwt

FRAME_SECONDS = 0.02
EPOCH = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)


def signed(secret: str, body: bytes | None = None) -> dict[str, str]:
    """Vonage's `Authorization` header: an HS256 JWT with the body's hash when there is a body."""
    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "api_key": "abcd1234",
        "application_id": str(uuid.uuid4()),
    }
    if body is not None:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


@dataclass
class MediaSocket:
    """The carrier's side of one call's media socket."""

    ws: aiohttp.ClientWebSocketResponse
    rate: int
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # (arrived, frame) from voxbus
    texts: list[dict[str, Any]] = field(default_factory=list)
    sent_at: dict[bytes, float] = field(default_factory=dict)  # frame → when it was sent
    reader: "asyncio.Task[None] | None" = None
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    next_send: float = 0.0  # loop time the next frame is due: a call's frames keep one pace

    @property
    def frame_bytes(self) -> int:
        return int(self.rate * FRAME_SECONDS) * 2

    async def read(self) -> None:
        async for message in self.ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                self.frames.append((time.monotonic(), message.data))
            elif message.type == aiohttp.WSMsgType.TEXT:
                self.texts.append(json.loads(message.data))
            self.arrived.set()

    async def speak(self, pcm: bytes) -> None:
        """`pcm` in 20 ms frames at real time (an accumulated deadline: no drift), continuing the
        pace of what was spoken before unless the line was quiet since."""
        size, loop = self.frame_bytes, asyncio.get_running_loop()
        deadline = max(self.next_send, loop.time())
        for start in range(0, len(pcm), size):
            frame = pcm[start : start + size]
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.sent_at.setdefault(frame, time.monotonic())
            await self.ws.send_bytes(frame)
            deadline += FRAME_SECONDS
        self.next_send = deadline

    async def dtmf(self, digit: str, duration: int = 260) -> None:
        await self.ws.send_str(json.dumps({"event": "websocket:dtmf", "digit": digit, "duration": duration}))

    async def wait_frames(self, count: int, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.frames) < count:
                self.arrived.clear()
                await self.arrived.wait()

    async def hang_up(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self.reader


class VonageCarrier:
    """Webhooks go to `webhook_bases` in turn (a load balancer's view of the telephony instances)."""

    def __init__(
        self, http: aiohttp.ClientSession, webhook_bases: list[str], secret: str | None = None
    ) -> None:
        self.http, self.secret = http, secret
        self._bases = webhook_bases
        self._next = 0
        self.webhook_targets: list[str] = []  # which base each webhook went to

    def _base(self) -> str:
        base = self._bases[self._next % len(self._bases)]
        self._next += 1
        self.webhook_targets.append(base)
        return base

    async def answer(self, call_id: str, *, caller: str = "447700900000", mode: str | None = None) -> Any:
        """The answer webhook as Vonage calls it by default (GET, query); the NCCO."""
        query = {"to": "447700900001", "from": caller, "uuid": call_id, "conversation_uuid": f"CON-{call_id}"}
        if mode is not None:
            query["mode"] = mode
        headers = signed(self.secret) if self.secret else {}
        async with self.http.get(f"{self._base()}/vonage/answer", params=query, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def event(self, call_id: str, status: str, **extra: Any) -> int:
        body = json.dumps(
            {
                "from": "447700900000",
                "to": "447700900001",
                "uuid": call_id,
                "conversation_uuid": f"CON-{call_id}",
                "status": status,
                "direction": "inbound",
                # ISO 8601 as Vonage writes it, later for every webhook this carrier sends
                "timestamp": (EPOCH + timedelta(milliseconds=10 * len(self.webhook_targets)))
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z"),
                **extra,
            }
        ).encode()
        headers = {"Content-Type": "application/json", **(signed(self.secret, body) if self.secret else {})}
        async with self.http.post(f"{self._base()}/vonage/event", data=body, headers=headers) as response:
            return response.status

    async def connect(self, ncco: Any, *, via: str | None = None) -> MediaSocket:
        """Follow the NCCO's websocket endpoint (to `via`'s host when given, as a load balancer
        would route it), and send the connected message."""
        connect = next(action for action in ncco if action["action"] == "connect")
        endpoint = connect["endpoint"][0]
        assert endpoint["type"] == "websocket"
        uri = endpoint["uri"]
        if via is not None:
            target = urlsplit(via)
            uri = urlunsplit(urlsplit(uri)._replace(netloc=target.netloc))
        headers = signed(self.secret) if connect.get("authorization", {}).get("type") == "vonage" else {}
        assert bool(headers) == bool(self.secret), (
            "the NCCO asks for a signed socket exactly when a secret is set"
        )
        ws = await self.http.ws_connect(uri, headers=headers)
        rate = int(endpoint["content-type"].rsplit("=", 1)[1])
        socket = MediaSocket(ws=ws, rate=rate)
        socket.reader = asyncio.create_task(socket.read(), name="carrier-media-reader")
        await ws.send_str(
            json.dumps(
                {
                    "event": "websocket:connected",
                    "content-type": endpoint["content-type"],
                    **endpoint["headers"],
                }
            )
        )
        return socket
