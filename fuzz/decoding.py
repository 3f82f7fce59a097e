"""A session's transcoder, instrumented for coverage: what the container and codec targets feed.

The voxbus modules are imported inside `atheris.instrument_imports`, so libFuzzer sees which of
their branches each input reaches. The checks are the property tests' own (tests/properties/
streams.py): a session records the same audio, or is refused with a DecodeError that says why,
whatever the cuts; the demuxers give the same verdict whatever the cuts, refusing only with a
ContainerError; output stays within the documented bound per byte received.
"""

from collections.abc import Callable

import atheris

with atheris.instrument_imports(include=["voxbus"]):
    from tests.properties.streams import DEMUXERS, Stream, demux, record

from fuzz.harness import cuts


def target(codec: str, *, rate: int, channels: int) -> Callable[[bytes], None]:
    """The fuzz target of a session's codec ("ogg", "wav", …) at `rate` and `channels`."""

    def test_one_input(data: bytes) -> None:
        pieces = cuts(data)
        if codec in DEMUXERS:
            assert demux(codec, pieces) == demux(codec, [data]), "the verdict depends on the cuts"
        source = Stream(name=codec, codec=codec, rate=rate, channels=channels, data=data)
        whole, cut = record(source, [data]), record(source, pieces)
        assert (whole.error is None) == (cut.error is None), (whole.error, cut.error)
        if whole.error is None:
            assert whole.pcm == cut.pcm, "the audio depends on the cuts"

    return test_one_input
