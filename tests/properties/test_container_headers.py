"""The fields of the containers' headers, each given any value its width holds.

Byte-level damage rarely writes a whole field (a float's eight bytes, a 20-bit rate): here the
headers are built field by field, from real codec packets, so that every value a field can
carry reaches the demuxer and the decoder behind it. What a client notices must still hold: the
stream decodes, or the session ends with a `DecodeError` saying why, within the output budget.
"""

import functools
import math
import struct

import hypothesis.strategies as st
from hypothesis import given

from tests.properties.budget import examples
from tests.properties.streams import (
    Stream,
    opus_packets_of,
    record,
    recorded_or_refused,
    stream,
    vorbis_headers,
)
from tests.unit.transcoder_containers.builders import (
    block_payload,
    ebml_header,
    element,
    ogg_stream,
    track_entry,
)
from voxbus.transcoder.containers import ContainerError, FlacStream, WebmDemuxer
from voxbus.transcoder.containers import matroska_ids as ids
from voxbus.transcoder.containers.xiph import xiph_lace

_OPUS_HEAD = struct.Struct("<8sBBHIhB")


def any_uint(bits: int) -> st.SearchStrategy[int]:
    """Any value of an unsigned field, the edges most often."""
    top = (1 << bits) - 1
    return st.one_of(st.sampled_from((0, 1, 2, top - 1, top)), st.integers(0, top))


@st.composite
def opus_heads(draw: st.DrawFn) -> bytes:
    head = _OPUS_HEAD.pack(
        b"OpusHead",
        draw(st.one_of(st.just(1), any_uint(8))),  # version
        draw(st.one_of(st.sampled_from((1, 2)), any_uint(8))),  # channels
        draw(any_uint(16)),  # pre-skip
        draw(any_uint(32)),  # input rate
        draw(st.integers(-(1 << 15), (1 << 15) - 1)),  # output gain
        draw(st.one_of(st.just(0), any_uint(8))),  # channel mapping family
    )
    return head + draw(st.binary(max_size=12))  # a mapping table, or junk


@st.composite
def vorbis_idents(draw: st.DrawFn) -> bytes:
    ident = bytearray(vorbis_headers()[0])
    ident[7:11] = draw(st.one_of(st.just(0), any_uint(32))).to_bytes(4, "little")  # version
    ident[11] = draw(st.one_of(st.just(2), any_uint(8)))  # channels
    ident[12:16] = draw(any_uint(32)).to_bytes(4, "little")  # rate
    ident[28] = draw(any_uint(8))  # blocksizes
    ident[29] = draw(st.one_of(st.just(1), any_uint(8)))  # framing
    return bytes(ident)


# -- Ogg ----------------------------------------------------------------------------------------


@examples(150)
@given(head=opus_heads(), channels=st.sampled_from((1, 2)))
def test_any_opus_head(head: bytes, channels: int) -> None:
    data = ogg_stream([head, b"OpusTags" + bytes(8), *opus_packets_of(channels)])
    outcome = record(Stream(name="ogg", codec="ogg", rate=48000, channels=channels, data=data), [data])
    assert recorded_or_refused(outcome, channels)


@examples(100)
@given(ident=vorbis_idents())
def test_any_vorbis_identification_header(ident: bytes) -> None:
    _, comment, setup, audio = vorbis_headers()
    data = ogg_stream([ident, comment, setup, *audio])
    outcome = record(Stream(name="ogg", codec="ogg", rate=44100, channels=2, data=data), [data])
    assert recorded_or_refused(outcome, 2)


# -- WebM ---------------------------------------------------------------------------------------


def _floats() -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from((48000.0, 44100.0, 0.0, -0.0, 0.4, math.nan, math.inf, -math.inf, 1e308)),
        st.floats(allow_nan=True, allow_infinity=True),
    )


@st.composite
def webm_streams(draw: st.DrawFn) -> tuple[bytes, int]:
    channels = draw(st.sampled_from((1, 2)))
    codec = draw(st.sampled_from(("A_OPUS", "A_VORBIS", "A_AAC", "")))
    private = b""
    if codec == "A_OPUS":
        private = draw(st.one_of(st.just(b""), opus_heads(), st.binary(max_size=40)))
    elif codec == "A_VORBIS":
        _, comment, setup, _ = vorbis_headers()
        private = draw(vorbis_idents().map(lambda ident: xiph_lace([ident, comment, setup])))
    # a block's track number is a vint: 2**56 - 2 is the most eight bytes hold
    number = draw(st.one_of(st.just(1), any_uint(8), st.integers(0, (1 << 56) - 2)))
    entry = track_entry(
        number,
        codec,
        codec_private=private,
        codec_delay_ns=draw(st.one_of(st.just(0), any_uint(64))),
        rate=draw(_floats()),
        channels=draw(st.one_of(st.just(channels), any_uint(8), any_uint(64))),
    )
    frames = list(opus_packets_of(channels))
    cluster = element(ids.TIMECODE, b"\x00")
    for frame in frames[:-1]:
        cluster += element(ids.SIMPLE_BLOCK, block_payload(number, [frame]))
    padding = draw(st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(0, 1 << 2000)))
    padding_bytes = padding.to_bytes(max(1, (padding.bit_length() + 8) // 8), "big", signed=True)
    cluster += element(
        ids.BLOCK_GROUP,
        element(ids.BLOCK, block_payload(number, frames[-1:])) + element(ids.DISCARD_PADDING, padding_bytes),
    )
    segment = element(ids.TRACKS, entry) + element(ids.CLUSTER, cluster)
    return ebml_header() + element(ids.SEGMENT, segment), channels


@examples(200)
@given(webm=webm_streams())
def test_any_track_entry_and_discard_padding(webm: tuple[bytes, int]) -> None:
    data, channels = webm
    record(Stream(name="webm", codec="webm", rate=48000, channels=channels, data=data), [data])
    demuxer = WebmDemuxer()
    try:
        demuxer.feed(data)
    except ContainerError as exc:
        assert str(exc).strip()
        return
    demuxer.end()
    assert demuxer.discard_padding >= 0


# -- FLAC ---------------------------------------------------------------------------------------


@functools.cache
def flac_parts() -> tuple[bytes, bytes]:
    """STREAMINFO's body and the frames of a real FLAC stream."""
    data = stream("flac").data
    reader = FlacStream()
    frames = reader.feed(data)
    assert reader.info is not None
    return reader.info.extradata, frames


@st.composite
def streaminfos(draw: st.DrawFn) -> bytes:
    body = flac_parts()[0]
    fields = int.from_bytes(body[:18], "big")
    widths = (16, 16, 24, 24, 20, 3, 5, 36)  # block sizes, frame sizes, rate, channels-1, bits-1, total
    values = []
    shift = 144
    for width in widths:
        shift -= width
        values.append((fields >> shift) & ((1 << width) - 1))
    packed = 0
    for width, value in zip(widths, values, strict=True):
        packed = packed << width | draw(st.one_of(st.just(value), any_uint(width)))
    return packed.to_bytes(18, "big") + body[18:]


@st.composite
def flac_streams(draw: st.DrawFn) -> bytes:
    frames = flac_parts()[1]
    blocks = [(0, draw(streaminfos()))]
    for _ in range(draw(st.integers(0, 2))):
        blocks.append((draw(st.integers(1, 127)), draw(st.binary(max_size=40))))
    head = b"fLaC"
    for index, (kind, body) in enumerate(blocks):
        last = 0x80 if index == len(blocks) - 1 else 0
        head += bytes([kind | last]) + len(body).to_bytes(3, "big") + body
    return head + frames


@examples(150)
@given(data=flac_streams())
def test_any_flac_metadata(data: bytes) -> None:
    outcome = record(Stream(name="flac", codec="flac", rate=16000, channels=1, data=data), [data])
    assert recorded_or_refused(outcome, 1)
