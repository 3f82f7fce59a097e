"""Hand-built Ogg pages and Matroska elements, for streams PyAV does not write (or writes only one way)."""

import itertools
import struct
from collections.abc import Sequence

from voxbus.transcoder.containers import matroska_ids as ids
from voxbus.transcoder.containers.crc import ogg_crc32

_OGG_HEADER = struct.Struct("<4sBBqIIIB")


def ogg_page(
    segments: Sequence[bytes], *, serial: int, sequence: int, flags: int = 0, granule: int = -1
) -> bytes:
    """One page holding `segments` (each at most 255 bytes), with a correct CRC."""
    header = _OGG_HEADER.pack(b"OggS", 0, flags, granule, serial, sequence, 0, len(segments))
    page = bytearray(header + bytes(len(segment) for segment in segments) + b"".join(segments))
    page[22:26] = ogg_crc32(page).to_bytes(4, "little")
    return bytes(page)


def ogg_stream(packets: Sequence[bytes], *, serial: int = 1, segments_per_page: int = 255) -> bytes:
    """`packets` laced into pages of at most `segments_per_page` segments; BOS first, EOS last.

    The granule of a page is 960 times the number of packets ended so far, -1 when none ends on it.
    """
    segments: list[tuple[bytes, bool]] = []  # (segment, ends a packet)
    for packet in packets:
        pieces = [packet[i : i + 255] for i in range(0, len(packet), 255)]
        if len(packet) % 255 == 0:
            pieces.append(b"")  # a packet of a multiple of 255 bytes ends with a 0 lacing value
        segments += [(piece, i == len(pieces) - 1) for i, piece in enumerate(pieces)]
    pages = []
    ended = 0
    continued = False
    for sequence, start in enumerate(range(0, len(segments), segments_per_page)):
        run = segments[start : start + segments_per_page]
        ends = sum(end for _, end in run)
        ended += ends
        flags = (0x01 if continued else 0) | (0x02 if start == 0 else 0)
        if start + segments_per_page >= len(segments):
            flags |= 0x04
        granule = ended * 960 if ends else -1
        pages.append(
            ogg_page([s for s, _ in run], serial=serial, sequence=sequence, flags=flags, granule=granule)
        )
        continued = not run[-1][1]
    return b"".join(pages)


def vint(value: int, length: int | None = None) -> bytes:
    """`value` as an EBML variable-length integer, in `length` bytes or the fewest that hold it."""
    if length is None:
        length = next(n for n in range(1, 9) if value < (1 << (7 * n)) - 1)
    return ((1 << (7 * length)) | value).to_bytes(length, "big")


def signed_vint(value: int, length: int) -> bytes:
    """A signed EBML lacing difference: biased by half the range."""
    return vint(value + (1 << (7 * length - 1)) - 1, length)


UNKNOWN_SIZE = b"\x01\xff\xff\xff\xff\xff\xff\xff"


def element(element_id: int, payload: bytes = b"", *, unknown_size: bool = False) -> bytes:
    head = element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")
    return head + (UNKNOWN_SIZE if unknown_size else vint(len(payload))) + payload


def uint(element_id: int, value: int) -> bytes:
    return element(element_id, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def ebml_header(doc_type: str = "webm") -> bytes:
    return element(ids.EBML_HEADER, uint(0x4286, 1) + element(ids.DOC_TYPE, doc_type.encode()))


def track_entry(
    number: int,
    codec_id: str,
    *,
    track_type: int = ids.TRACK_TYPE_AUDIO,
    codec_private: bytes = b"",
    codec_delay_ns: int = 0,
    rate: float = 48000.0,
    channels: int = 2,
) -> bytes:
    audio = element(
        ids.AUDIO, element(ids.SAMPLING_FREQUENCY, struct.pack(">d", rate)) + uint(ids.CHANNELS, channels)
    )
    body = uint(ids.TRACK_NUMBER, number) + uint(ids.TRACK_TYPE, track_type)
    body += element(ids.CODEC_ID, codec_id.encode())
    if codec_private:
        body += element(ids.CODEC_PRIVATE, codec_private)
    if codec_delay_ns:
        body += uint(ids.CODEC_DELAY, codec_delay_ns)
    return element(ids.TRACK_ENTRY, body + audio)


def block_payload(track: int, frames: Sequence[bytes], *, lacing: str = "none", timecode: int = 0) -> bytes:
    """A SimpleBlock/Block payload; `lacing` is "none" (one frame), "xiph", "fixed" or "ebml"."""
    bits = {"none": 0, "xiph": 1, "fixed": 2, "ebml": 3}[lacing]
    head = vint(track) + timecode.to_bytes(2, "big", signed=True) + bytes([0x80 | bits << 1])
    if lacing == "none":
        return head + frames[0]
    laced = bytearray([len(frames) - 1])
    if lacing == "xiph":
        for frame in frames[:-1]:
            laced += b"\xff" * (len(frame) // 255) + bytes([len(frame) % 255])
    elif lacing == "ebml":
        laced += vint(len(frames[0]))
        for previous, frame in itertools.pairwise(frames[:-1]):
            laced += signed_vint(len(frame) - len(previous), 2)
    return head + bytes(laced) + b"".join(frames)
