"""The `/ws/echo` protocol as the client speaks it: connect, the config message, what comes back."""

import logging
import time
from typing import Final

import aiohttp

from voxbus.cli.echo_client.errors import ClientError
from voxbus.cli.echo_client.tally import Tally
from voxbus.cli.echo_client.wav import SAMPLE_WIDTH, WavOutput
from voxbus.common.client_messages import EchoConfig, EchoPing, EchoPong, EchoStreamFormat, MessageError

log = logging.getLogger("voxbus.echo_client")

PING: Final = EchoPing().to_wire()
INVALID_API_KEY: Final = 4001  # the seed server's close code for a wrong key
CONFIG_TIMEOUT_S: Final = 10.0


def parse_config(text: str) -> EchoStreamFormat:
    """The server's first message (`EchoConfig`): the PCM it takes, which must be 16-bit mono.
    Fields a newer server may add are ignored."""
    try:
        config = EchoConfig.from_wire(text, extra="ignore").data
    except MessageError as exc:
        raise ClientError(f"expected a config message first, got {text[:200]!r} ({exc})") from exc
    if (config.channels, config.sample_width) != (1, SAMPLE_WIDTH):
        raise ClientError(
            f"the server streams {config.channels} channel(s) of {config.sample_width}-byte samples; "
            "this client speaks 16-bit mono"
        )
    return config


async def connect(
    http: aiohttp.ClientSession, url: str, api_key: str | None
) -> aiohttp.ClientWebSocketResponse:
    headers = {"X-API-Key": api_key} if api_key else {}
    try:
        return await http.ws_connect(url, headers=headers)
    except aiohttp.WSServerHandshakeError as exc:
        raise ClientError(f"{url} refused the WebSocket upgrade: HTTP {exc.status} {exc.message}") from exc
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        raise ClientError(f"cannot connect to {url}: {str(exc) or type(exc).__name__}") from exc


async def read_config(ws: aiohttp.ClientWebSocketResponse) -> EchoStreamFormat:
    try:
        message = await ws.receive(timeout=CONFIG_TIMEOUT_S)
    except TimeoutError as exc:
        raise ClientError(f"the server sent no config message within {CONFIG_TIMEOUT_S:.0f} s") from exc
    if message.type == aiohttp.WSMsgType.TEXT:
        return parse_config(message.data)
    if message.type == aiohttp.WSMsgType.CLOSE and message.data == INVALID_API_KEY:
        reason = message.extra or "Invalid API key"
        raise ClientError(
            f"the server refused the API key (close {INVALID_API_KEY} {reason!r}); pass it with --api-key"
        )
    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
        raise ClientError(
            f"the server closed the connection before its config: {ws.close_code} {message.extra or ''}"
        )
    raise ClientError(f"expected a config message first, got a {message.type.name} message")


async def receive(ws: aiohttp.ClientWebSocketResponse, tally: Tally, output: WavOutput | None) -> str:
    """Every message until the server closes the connection: its close code and reason."""
    while True:
        message = await ws.receive()
        if message.type == aiohttp.WSMsgType.BINARY:
            tally.received(len(message.data), time.monotonic())
            if output is not None:
                output.write(message.data)
        elif message.type == aiohttp.WSMsgType.TEXT:
            on_text(message.data, tally)
        elif message.type == aiohttp.WSMsgType.ERROR:
            raise ClientError(f"the connection failed: {ws.exception()}")
        elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            return f"{ws.close_code} {message.extra or ''}".strip()


def on_text(text: str, tally: Tally) -> None:
    try:
        EchoPong.from_wire(text, extra="ignore")
    except MessageError:
        log.warning("server: %.200s", text)
        return
    tally.pong(time.monotonic())


async def send_message(ws: aiohttp.ClientWebSocketResponse, data: bytes | str) -> None:
    try:
        await (ws.send_bytes(data) if isinstance(data, bytes) else ws.send_str(data))
    except (aiohttp.ClientError, ConnectionError) as exc:
        raise ClientError(f"the connection was lost: {exc}") from exc
