"""Ogg's CRC-32: polynomial 0x04C11DB7, MSB-first (not reflected), initial value 0, no final xor."""

import zlib

_REVERSED_BITS = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_ALL_ONES = 0xFFFFFFFF


def ogg_crc32(data: bytes | bytearray) -> int:
    """The Ogg page checksum of `data`.

    zlib computes the reflected form of the same polynomial in C. A reflected CRC over bit-reversed
    bytes is the bit-reversed MSB-first CRC, so reversing the input bytes and the result gives Ogg's
    CRC at zlib's speed. Passing 0xFFFFFFFF as the running value cancels zlib's initial inversion and
    xoring the result cancels its final one.
    """
    reflected = zlib.crc32(data.translate(_REVERSED_BITS), _ALL_ONES) ^ _ALL_ONES
    return int.from_bytes(reflected.to_bytes(4, "little").translate(_REVERSED_BITS), "big")
