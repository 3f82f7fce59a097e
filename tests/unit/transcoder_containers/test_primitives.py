"""The shared pieces: Ogg's CRC, Xiph lacing, EBML variable-length integers, StreamInfo's checks."""

import random

import pytest

from voxbus.transcoder.containers import ContainerError, StreamInfo
from voxbus.transcoder.containers.crc import ogg_crc32
from voxbus.transcoder.containers.ebml import read_element_id, read_vint
from voxbus.transcoder.containers.xiph import xiph_lace, xiph_unlace


def bitwise_ogg_crc(data: bytes) -> int:
    """The textbook MSB-first CRC-32: polynomial 0x04C11DB7, initial value 0, no final xor."""
    crc = 0
    for byte in data:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7 if crc & 0x80000000 else crc << 1) & 0xFFFFFFFF
    return crc


@pytest.mark.parametrize("size", [0, 1, 4, 27, 1000])
def test_ogg_crc_matches_the_bitwise_definition(size: int) -> None:
    data = random.Random(size).randbytes(size)
    assert ogg_crc32(data) == bitwise_ogg_crc(data)


def test_xiph_lacing_round_trip() -> None:
    packets = [b"\x01vorbis" + bytes(23), b"c" * 510, b"s" * 3000]
    laced = xiph_lace(packets)
    assert laced[:5] == b"\x02\x1e\xff\xff\x00"  # 30, then 510 = 255 + 255 + 0
    assert xiph_unlace(laced, 0) == packets


def test_vints() -> None:
    assert read_vint(b"\x81", 0, 0) == (1, 1)
    assert read_vint(b"\x40\x02", 0, 0) == (2, 2)
    assert read_vint(b"\x01\xff\xff\xff\xff\xff\xff\xff", 0, 0) == ((1 << 56) - 1, 8)
    assert read_vint(b"\x40", 0, 0) is None  # the second byte has not arrived
    with pytest.raises(ContainerError, match="at byte 7"):
        read_vint(b"\x00", 0, 7)


def test_element_ids_keep_their_marker() -> None:
    assert read_element_id(b"\x1a\x45\xdf\xa3", 0, 0) == (0x1A45DFA3, 4)
    assert read_element_id(b"\xa3", 0, 0) == (0xA3, 1)
    with pytest.raises(ContainerError, match="invalid EBML element id"):
        read_element_id(b"\x08\x00\x00\x00\x00", 0, 0)  # 5 bytes is beyond an id's 4
    with pytest.raises(ContainerError, match="reserved EBML element id 0xff"):
        read_element_id(b"\xff", 0, 0)


def test_stream_info_refuses_impossible_values() -> None:
    with pytest.raises(ValueError, match="channels"):
        StreamInfo(codec="opus", sample_rate=48000, channels=0)
    with pytest.raises(ValueError, match="codec"):
        StreamInfo(codec="mp3", sample_rate=48000, channels=1)  # type: ignore[arg-type]
    assert StreamInfo(codec="opus", sample_rate=16000, channels=1).output_rate == 48000
