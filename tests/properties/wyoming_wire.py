"""Wyoming over TCP as ingest reads it: bytes handed to `WyomingTcpWire` in the pieces a socket
would deliver, the events it hands on, and the refusal that ends the connection. The fuzz target
(fuzz/wyoming.py) reads with this too."""

import asyncio
import json

from aiohttp import WSMsgType

from voxbus.common.wyoming_events import EventHeader
from voxbus.ingest.wyoming_framing import FramingError, WyomingTcpWire

HEADER_LIMIT = 1024  # small, so that inputs of a few KiB reach the limits
PAYLOAD_LIMIT = 2048


class _Writer:
    """The connection's write side: the wire asks it only whether it is closing while it reads."""

    def is_closing(self) -> bool:
        return False


async def read_events(pieces: list[bytes]) -> list[tuple[str, object]]:
    """What the wire hands on from `pieces`: ("TEXT", the header as JSON), ("BINARY", a payload)
    and, last, ("refused", why) if it refused the bytes. Checks on the way what holds whatever
    the bytes: only a FramingError with a reason ends it, each header is a JSON event within
    the header limit, each payload within the chunk limit, and the read ends."""
    reader = asyncio.StreamReader(limit=HEADER_LIMIT)
    wire = WyomingTcpWire(
        reader,
        _Writer(),  # type: ignore[arg-type]
        header_limit=HEADER_LIMIT,
        payload_limit=PAYLOAD_LIMIT,
        write_seconds=1.0,
    )

    async def feed() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)  # the wire reads what it can before the next piece comes
        reader.feed_eof()

    feeding = asyncio.create_task(feed())
    events: list[tuple[str, object]] = []
    try:
        async with asyncio.timeout(10):  # the bytes end: so must the read
            while True:
                message = await wire.receive()
                if message.type is WSMsgType.CLOSED:
                    break
                if message.type is WSMsgType.TEXT:
                    assert len(message.data) <= HEADER_LIMIT
                    header = json.loads(message.data)
                    EventHeader.parse(header)  # what was handed on is an event
                    events.append(("TEXT", header))
                else:
                    assert message.type is WSMsgType.BINARY and len(message.data) <= PAYLOAD_LIMIT
                    events.append(("BINARY", message.data))
    except FramingError as exc:
        assert exc.reply.error.strip(), "a refusal without a reason"
        events.append(("refused", exc.rejection))
    finally:
        await feeding
    return events


def read(pieces: list[bytes]) -> list[tuple[str, object]]:
    return asyncio.run(read_events(pieces))
