"""One Ogg page (RFC 3533): where it ends in a buffer, and its checked fields."""

import struct
from dataclasses import dataclass

from .crc import ogg_crc32
from .errors import ContainerError

CAPTURE = b"OggS"
HEADER_SIZE = 27
FLAG_CONTINUED = 0x01
FLAG_BOS = 0x02
FLAG_EOS = 0x04
NO_GRANULE = -1
"""The granule position of a page on which no packet ends."""

_HEADER = struct.Struct("<4sBBqIIIB")
_CRC_FIELD = slice(22, 26)


@dataclass(frozen=True, slots=True)
class OggPage:
    """A page whose checksum matched. `lacing` is its segment table, `body` the segments' bytes."""

    offset: int
    flags: int
    granule: int
    serial: int
    sequence: int
    lacing: bytes
    body: bytes

    @property
    def continued(self) -> bool:
        return bool(self.flags & FLAG_CONTINUED)

    @property
    def bos(self) -> bool:
        return bool(self.flags & FLAG_BOS)

    @property
    def eos(self) -> bool:
        return bool(self.flags & FLAG_EOS)

    def first_packet(self) -> bytes:
        """The bytes of the first segment run (a whole packet on a BOS page)."""
        size = 0
        for lace in self.lacing:
            size += lace
            if lace < 255:
                break
        return self.body[:size]


def page_size(buf: bytes | bytearray, offset: int) -> int | None:
    """Length of the page starting at `buf[0]` (stream offset `offset`); None until its header is here.

    Checks the capture pattern as soon as its first bytes arrive, so a non-Ogg stream fails early.
    """
    head = bytes(buf[:4])
    if not CAPTURE.startswith(head):
        raise ContainerError(f"bad Ogg capture pattern {head!r} at byte {offset} (expected b'OggS')")
    if len(buf) < HEADER_SIZE:
        return None
    if buf[4] != 0:
        raise ContainerError(f"unsupported Ogg page version {buf[4]} at byte {offset}")
    segments = buf[26]
    if len(buf) < HEADER_SIZE + segments:
        return None
    return HEADER_SIZE + segments + sum(buf[HEADER_SIZE : HEADER_SIZE + segments])


def parse_page(raw: bytes, offset: int) -> OggPage:
    """The page that is exactly `raw` (as measured by `page_size`), after checking its CRC."""
    _, _, flags, granule, serial, sequence, crc, segments = _HEADER.unpack_from(raw)
    zeroed = bytearray(raw)
    zeroed[_CRC_FIELD] = bytes(4)
    actual = ogg_crc32(zeroed)
    if actual != crc:
        raise ContainerError(
            f"Ogg page CRC mismatch at byte {offset}: header says {crc:#010x}, bytes give {actual:#010x}"
        )
    lacing = raw[HEADER_SIZE : HEADER_SIZE + segments]
    return OggPage(
        offset=offset,
        flags=flags,
        granule=granule,
        serial=serial,
        sequence=sequence,
        lacing=lacing,
        body=raw[HEADER_SIZE + segments :],
    )
