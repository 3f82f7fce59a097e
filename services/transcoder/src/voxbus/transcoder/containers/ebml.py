"""EBML primitives (RFC 8794): variable-length integers, element headers and scalar leaf values."""

import struct
from collections.abc import Iterator

from .errors import ContainerError

MAX_ID_LENGTH = 4


def vint_length(first: int) -> int:
    """Length of the vint whose first byte is `first` (its leading marker bit), 0 if that byte is 0."""
    return 9 - first.bit_length() if first else 0


def read_element_id(buf: bytes | bytearray, pos: int, at: int) -> tuple[int, int] | None:
    """(id with its marker bits kept, length) of the id at `buf[pos]`, None if not all here yet.

    `at` is the stream offset of `buf[pos]`, for messages.
    """
    if pos >= len(buf):
        return None
    length = vint_length(buf[pos])
    if not 1 <= length <= MAX_ID_LENGTH:
        raise ContainerError(f"invalid EBML element id (first byte {buf[pos]:#04x}) at byte {at}")
    if len(buf) < pos + length:
        return None
    value = int.from_bytes(buf[pos : pos + length], "big")
    data = value & ((1 << (7 * length)) - 1)
    if data in (0, (1 << (7 * length)) - 1):
        raise ContainerError(f"reserved EBML element id {value:#x} at byte {at}")
    return value, length


def read_vint(buf: bytes | bytearray, pos: int, at: int) -> tuple[int, int] | None:
    """(value without marker, length) of the vint at `buf[pos]`, None if not all here yet.

    The value is all ones (`(1 << 7 * length) - 1`) for an unknown size; see `is_unknown_size`.
    """
    if pos >= len(buf):
        return None
    length = vint_length(buf[pos])
    if length == 0:
        raise ContainerError(f"invalid EBML variable-length integer (first byte 0x00) at byte {at}")
    if len(buf) < pos + length:
        return None
    value = int.from_bytes(buf[pos : pos + length], "big") & ((1 << (7 * length)) - 1)
    return value, length


def is_unknown_size(value: int, length: int) -> bool:
    return value == (1 << (7 * length)) - 1


def read_uint(payload: bytes, at: int) -> int:
    if len(payload) > 8:
        raise ContainerError(f"unsigned integer element of {len(payload)} bytes at byte {at}")
    return int.from_bytes(payload, "big")


def read_int(payload: bytes, at: int) -> int:
    if len(payload) > 8:
        raise ContainerError(f"signed integer element of {len(payload)} bytes at byte {at}")
    return int.from_bytes(payload, "big", signed=True)


def read_float(payload: bytes, at: int) -> float:
    if len(payload) == 0:
        return 0.0
    if len(payload) == 4:
        return float(struct.unpack(">f", payload)[0])
    if len(payload) == 8:
        return float(struct.unpack(">d", payload)[0])
    raise ContainerError(f"float element of {len(payload)} bytes at byte {at}")


def read_string(payload: bytes) -> str:
    """An ASCII string element; trailing NUL padding is allowed and dropped."""
    return payload.rstrip(b"\x00").decode("ascii", errors="replace")


def iter_children(payload: bytes, at: int) -> Iterator[tuple[int, bytes, int]]:
    """(id, body, stream offset) of each child of a master element read whole; `at` is the body's offset."""
    pos = 0
    while pos < len(payload):
        head = read_element_id(payload, pos, at + pos)
        if head is None:
            raise ContainerError(f"element id cut short at byte {at + pos}")
        element_id, id_length = head
        size = read_vint(payload, pos + id_length, at + pos + id_length)
        if size is None or is_unknown_size(*size):
            raise ContainerError(f"missing or unknown size of element {element_id:#x} at byte {at + pos}")
        body = pos + id_length + size[1]
        if body + size[0] > len(payload):
            raise ContainerError(f"element {element_id:#x} at byte {at + pos} overruns its parent")
        yield element_id, payload[body : body + size[0]], at + pos
        pos = body + size[0]
