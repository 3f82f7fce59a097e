"""Fuzz target: Wyoming over TCP as the ingest reads it (`WyomingTcpWire`): header lines, extra
data merged over `data`, payloads; the bytes arrive in the harness's cuts, as a socket would hand
them over.

Checked: the events read, and the refusal that ends the connection (a FramingError, with a reason
for the client), are the same however the bytes were cut; nothing else is raised; each header
handed on is a JSON event within the header limit, each payload within the chunk limit; the
read ends (at the end of the bytes, or at the refusal).

Run: `uv run --frozen python -m fuzz.wyoming <new-inputs-dir> fuzz/corpus/wyoming` (fuzz/README.md).
"""

import asyncio
import json

import atheris

with atheris.instrument_imports(include=["voxbus"]):
    from aiohttp import WSMsgType

    from voxbus.common.wyoming_events import EventHeader
    from voxbus.ingest.wyoming_framing import FramingError, WyomingTcpWire

from fuzz.harness import cuts, main

HEADER_LIMIT = 1024  # small, so that inputs of a few KiB reach the limits
PAYLOAD_LIMIT = 2048
_RUNNER = asyncio.Runner()


class _Writer:
    """The connection's write side: the wire asks it only whether it is closing while it reads."""

    def is_closing(self) -> bool:
        return False


async def _read(pieces: list[bytes]) -> list[tuple[str, object]]:
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
        while True:
            message = await wire.receive()
            if message.type is WSMsgType.CLOSED:
                break
            if message.type is WSMsgType.TEXT:
                assert len(message.data) <= HEADER_LIMIT
                EventHeader.parse(json.loads(message.data))  # what was handed on is an event
            else:
                assert message.type is WSMsgType.BINARY and len(message.data) <= PAYLOAD_LIMIT
            events.append((message.type.name, message.data))
    except FramingError as exc:
        assert exc.reply.error.strip(), "a refusal without a reason"
        events.append(("refused", exc.rejection))
    finally:
        await feeding
    return events


def test_one_input(data: bytes) -> None:
    whole = _RUNNER.run(_read([data]))
    assert _RUNNER.run(_read(cuts(data))) == whole, "the events depend on the cuts"


if __name__ == "__main__":
    main(test_one_input)
