"""What the fuzz targets share: how a target runs under libFuzzer, and the cuts a client might
make in its input.

A target is `test_one_input(data)`: it feeds `data` to a parser whole and in the cuts below, and
checks what the property tests (tests/properties) check. Any exception that is not the parser's
own refusal, and any property broken (an AssertionError), is a crash: libFuzzer saves the input
as `crash-<sha1>` (under `-artifact_prefix`) and exits non-zero.
"""

import random
import sys
import zlib
from collections.abc import Callable

import atheris


def cuts(data: bytes) -> list[bytes]:
    """`data` cut as a client might have cut it into messages: pieces of 1 to 4096 bytes, drawn
    from a generator seeded with the data's CRC, so an input always replays with the same cuts."""
    draw = random.Random(zlib.crc32(data))
    pieces = []
    at = 0
    while at < len(data):
        size = draw.choice((1, 2, 3, draw.randint(1, 64), draw.randint(1, 4096)))
        pieces.append(data[at : at + size])
        at += size
    return pieces


def main(test_one_input: Callable[[bytes], None]) -> None:
    """Fuzz `test_one_input` with libFuzzer's command line (`sys.argv`): a corpus folder runs a
    campaign; a file name runs that input once (to reproduce a crash)."""
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
