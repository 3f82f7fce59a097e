"""`/ws/audio`: raw binary in, the same bytes back through the echo path (`?delay_ms=`, default 0).

The seed servers' clients send 16 kHz PCM and expect their bytes back; text gets a text error.
Each connection is a session of its own (recorded like any other), finished when it closes, or
when it is closed from outside (the base adapter's `on_close_request`: close 1000 with the reason).
"""

from voxbus.common.client_messages import AUDIO_TEXT_ERROR, MAX_DELAY_MS, InvalidParameter
from voxbus.common.constants import SAMPLE_RATES
from voxbus.common.records import AudioFormat, EchoSettings
from voxbus.ingest.protocols.base import Adapter, Connection, SessionRefused
from voxbus.ingest.sessions import SessionSpec


class EchoAdapter(Adapter):
    protocol = "echo"

    async def on_open(self, conn: Connection) -> bool:
        query = self.opening.query
        try:
            delay_ms = int(query.get("delay_ms", "0"))
            rate = int(query.get("sample_rate", "16000"))
        except ValueError:
            delay_ms = rate = -1
        if not 0 <= delay_ms <= MAX_DELAY_MS or rate not in SAMPLE_RATES:
            raise SessionRefused(InvalidParameter(), 1008)
        await conn.open(
            SessionSpec(
                user_id=query.get("user_id", "anonymous"),
                protocol=self.protocol,
                format=AudioFormat(codec="pcm_s16le", rate=rate, channels=1),
                echo=EchoSettings(enabled=True, delay_ms=delay_ms),
            )
        )
        return True

    async def on_text(self, conn: Connection, text: str) -> None:
        await conn.send_text(AUDIO_TEXT_ERROR)

    async def on_binary(self, conn: Connection, data: bytes) -> None:
        if data and not conn.finished:  # finished: closed from outside, the socket closes
            await conn.audio(data, _no_ack)

    async def on_disconnect(self, conn: Connection) -> None:
        await conn.finish("client disconnected", wait=False)

    def egress(self, audio: bytes) -> list[str | bytes]:
        return [audio]


async def _no_ack(ok: bool) -> None:
    return None
