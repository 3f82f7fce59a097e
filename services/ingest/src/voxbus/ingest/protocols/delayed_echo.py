"""`/ws/echo`: the delayed-echo protocol (seed 4): a config message first, PCM back after
ECHO_DELAY_MS, ping → pong, and close 4001 "Invalid API key" when the key is wrong."""

from voxbus.common.client_messages import (
    ClientMessage,
    EchoConfig,
    EchoInvalidJson,
    EchoPing,
    EchoPong,
    EchoStreamFormat,
    EchoUnknownMessage,
    ErrorReply,
    MessageError,
)
from voxbus.common.records import AudioFormat, EchoSettings
from voxbus.ingest.protocols.base import Connection
from voxbus.ingest.protocols.echo import EchoAdapter
from voxbus.ingest.protocols.text import InvalidJson, parse_json
from voxbus.ingest.sessions import SessionSpec

CONFIG = EchoConfig(data=EchoStreamFormat(sample_rate=16000, chunk_size=4096, channels=1, sample_width=2))


class DelayedEchoAdapter(EchoAdapter):
    """Binary in, the same bytes back (EchoAdapter's), with its own greeting, text and auth."""

    protocol = "delayed_echo"
    auth_close_code = 4001

    def auth_error(self, reply: ErrorReply) -> ClientMessage | None:
        return None  # its clients expect only the close code and reason

    async def on_open(self, conn: Connection) -> bool:
        await conn.open(
            SessionSpec(
                user_id=self.opening.query.get("user_id", "anonymous"),
                protocol=self.protocol,
                format=AudioFormat(codec="pcm_s16le", rate=16000, channels=1),
                echo=EchoSettings(enabled=True, delay_ms=conn.settings.echo_delay_ms),
            )
        )
        await conn.send(CONFIG)
        return True

    async def on_text(self, conn: Connection, text: str) -> None:
        try:
            message = parse_json(text)
        except InvalidJson:
            await conn.send(EchoInvalidJson())
            return
        try:
            EchoPing.parse(message, extra="ignore")
        except MessageError:
            await conn.send(EchoUnknownMessage(received=message))
            return
        await conn.send(EchoPong())
