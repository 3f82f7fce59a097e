"""Identification headers of the Xiph codecs (Opus, Vorbis) and Xiph lacing of header packets."""

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from .errors import ContainerError

OPUS_HEAD = b"OpusHead"
OPUS_TAGS = b"OpusTags"
VORBIS_ID = b"\x01vorbis"
VORBIS_COMMENT = b"\x03vorbis"
VORBIS_SETUP = b"\x05vorbis"
# Header packet magics, in the order each codec sends them.
OPUS_HEADERS = (OPUS_HEAD, OPUS_TAGS)
VORBIS_HEADERS = (VORBIS_ID, VORBIS_COMMENT, VORBIS_SETUP)

_OPUS_HEAD = struct.Struct("<8sBBHIhB")
_VORBIS_ID = struct.Struct("<7sIBIiiiBB")


@dataclass(frozen=True, slots=True)
class OpusHead:
    """The fields of an Opus identification header (RFC 7845 §5.1) a demuxer needs."""

    channels: int
    pre_skip: int
    input_rate: int
    """The encoder's input rate, 0 if unspecified; decoding is always at 48 kHz."""


@dataclass(frozen=True, slots=True)
class VorbisId:
    """The fields of a Vorbis identification header a demuxer needs."""

    channels: int
    sample_rate: int


def parse_opus_head(packet: bytes, at: int) -> OpusHead:
    """Read an OpusHead packet; `at` is its stream offset, for messages."""
    if len(packet) < _OPUS_HEAD.size or not packet.startswith(OPUS_HEAD):
        raise ContainerError(f"malformed OpusHead at byte {at}")
    _, version, channels, pre_skip, input_rate, _gain, _family = _OPUS_HEAD.unpack_from(packet)
    if version >> 4:
        raise ContainerError(f"unsupported OpusHead version {version} at byte {at}")
    if channels == 0:
        raise ContainerError(f"OpusHead with 0 channels at byte {at}")
    return OpusHead(channels=channels, pre_skip=pre_skip, input_rate=input_rate)


def parse_vorbis_id(packet: bytes, at: int) -> VorbisId:
    """Read a Vorbis identification header packet; `at` is its stream offset, for messages."""
    if len(packet) < _VORBIS_ID.size or not packet.startswith(VORBIS_ID):
        raise ContainerError(f"malformed Vorbis identification header at byte {at}")
    _, version, channels, rate, _max, _nominal, _min, _blocksizes, framing = _VORBIS_ID.unpack_from(packet)
    if version != 0:
        raise ContainerError(f"unsupported Vorbis version {version} at byte {at}")
    if channels == 0 or rate == 0 or not framing & 1:
        raise ContainerError(f"invalid Vorbis identification header at byte {at}")
    return VorbisId(channels=channels, sample_rate=rate)


def xiph_lace(packets: Sequence[bytes]) -> bytes:
    """Packets as one blob: count-1, the sizes of all but the last in 255-runs, then the packets.

    This is Matroska's CodecPrivate for A_VORBIS and the extradata FFmpeg's Vorbis decoder takes.
    """
    if not packets:
        raise ValueError("nothing to lace")
    if len(packets) > 256:
        raise ValueError(f"Xiph lacing holds at most 256 packets, not {len(packets)}")
    sizes = bytearray([len(packets) - 1])
    for packet in packets[:-1]:
        sizes += b"\xff" * (len(packet) // 255) + bytes([len(packet) % 255])
    return bytes(sizes) + b"".join(packets)


def xiph_unlace(blob: bytes, at: int) -> list[bytes]:
    """The packets of a `xiph_lace` blob; `at` is its stream offset, for messages."""
    if not blob:
        raise ContainerError(f"empty Xiph-laced data at byte {at}")
    count = blob[0] + 1
    pos = 1
    sizes = []
    for _ in range(count - 1):
        size = 0
        while True:
            if pos >= len(blob):
                raise ContainerError(f"Xiph lacing runs past its data at byte {at}")
            size += blob[pos]
            pos += 1
            if blob[pos - 1] != 255:
                break
        sizes.append(size)
    if pos + sum(sizes) > len(blob):
        raise ContainerError(f"Xiph-laced sizes exceed their data at byte {at}")
    packets = []
    for size in sizes:
        packets.append(blob[pos : pos + size])
        pos += size
    packets.append(blob[pos:])
    return packets
