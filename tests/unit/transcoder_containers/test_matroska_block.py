"""parse_block on hand-made SimpleBlock payloads: each lacing mode, with the Matroska spec's examples."""

import pytest

from voxbus.transcoder.containers import Block, ContainerError, parse_block

from .builders import block_payload

# Three frames of 800, 500 and 1000 bytes, as in the lacing examples of the Matroska specification.
FRAMES = (b"a" * 800, b"b" * 500, b"c" * 1000)
HEADER = b"\x81\x00\x10"  # track 1 (vint), timecode 16


def test_no_lacing() -> None:
    block = parse_block(HEADER + b"\x80" + b"opus!")
    assert block == Block(track=1, timecode=16, flags=0x80, frames=(b"opus!",))
    assert block.keyframe
    assert block.lacing == 0


def test_xiph_lacing_spec_example() -> None:
    lacing = b"\x02" + b"\xff\xff\xff\x23" + b"\xff\xf5"  # 800 = 3*255 + 35, 500 = 255 + 245
    block = parse_block(HEADER + b"\x82" + lacing + b"".join(FRAMES))
    assert block.frames == FRAMES
    assert block.lacing == 1


def test_ebml_lacing_spec_example() -> None:
    lacing = b"\x02" + b"\x43\x20" + b"\x5e\xd3"  # 800 as a vint, then 500 - 800 = -300 as a signed vint
    block = parse_block(HEADER + b"\x86" + lacing + b"".join(FRAMES))
    assert block.frames == FRAMES
    assert block.lacing == 3


def test_fixed_lacing_spec_example() -> None:
    block = parse_block(HEADER + b"\x84" + b"\x02" + b"x" * 2400)
    assert block.frames == (b"x" * 800,) * 3
    assert block.lacing == 2


@pytest.mark.parametrize("lacing", ["xiph", "fixed", "ebml"])
def test_laced_frames_round_trip(lacing: str) -> None:
    sizes = [7] * 9 if lacing == "fixed" else [0, 1, 254, 255, 256, 510, 4000, 12, 3]
    frames = [bytes([n]) * size for n, size in enumerate(sizes)]
    block = parse_block(block_payload(300, frames, lacing=lacing, timecode=-5))
    assert (block.track, block.timecode, block.frames) == (300, -5, tuple(frames))


def test_fixed_lacing_with_uneven_bytes() -> None:
    with pytest.raises(ContainerError, match="do not split into 3 equal frames at byte 104"):
        parse_block(HEADER + b"\x84" + b"\x02" + b"x" * 2401, at=100)


def test_ebml_lacing_sizes_beyond_the_block() -> None:
    with pytest.raises(ContainerError, match="EBML-laced frame sizes do not fit their block"):
        parse_block(HEADER + b"\x86" + b"\x02\x43\x20\x5e\xd3" + b"x" * 1000)


def test_xiph_lacing_beyond_the_block() -> None:
    with pytest.raises(ContainerError, match="Xiph lacing runs past its data"):
        parse_block(HEADER + b"\x82" + b"\x02\xff\xff")


def test_too_short_for_a_header() -> None:
    with pytest.raises(ContainerError, match="block at byte 9 is too short"):
        parse_block(b"\x81\x00", at=9)
