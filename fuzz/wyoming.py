"""Fuzz target: Wyoming over TCP as the ingest reads it (`WyomingTcpWire`): header lines, extra
data merged over `data`, payloads; the bytes arrive in the harness's cuts, as a socket would hand
them over.

Checked (tests/properties/wyoming_wire.py): the events read, and the refusal that ends the
connection (a FramingError, with a reason for the client), are the same however the bytes were
cut; nothing else is raised; each header handed on is a JSON event within the header limit, each
payload within the chunk limit; the read ends.

Run: `uv run --frozen python -m fuzz.wyoming <new-inputs-dir> fuzz/corpus/wyoming` (fuzz/README.md).
"""

import asyncio

import atheris

with atheris.instrument_imports(include=["voxbus"]):
    from tests.properties.wyoming_wire import read_events

from fuzz.harness import cuts, main

_RUNNER = asyncio.Runner()


def test_one_input(data: bytes) -> None:
    whole = _RUNNER.run(read_events([data]))
    assert _RUNNER.run(read_events(cuts(data))) == whole, "the events depend on the cuts"


if __name__ == "__main__":
    main(test_one_input)
