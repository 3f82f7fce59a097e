"""Real media for the container tests, encoded with PyAV at test time, and PyAV's own view of it."""

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import av
import numpy as np
import numpy.typing as npt

SECONDS = 2
CHUNK_SIZES = (1, 333, 4096, 65536)


@dataclass(frozen=True, slots=True)
class Reference:
    """What FFmpeg's demuxer and decoder make of a file."""

    packets: tuple[bytes, ...]
    sample_rate: int
    channels: int
    delay: int
    extradata: bytes
    decoded_samples: int


def signal(rate: int, channels: int, *, bits: int = 16, seconds: float = SECONDS) -> npt.NDArray[Any]:
    """A tone plus noise, (samples, channels); int16, or int32 with `bits` significant high bits."""
    rng = np.random.default_rng(7)
    t = np.arange(int(rate * seconds)) / rate
    columns = [
        0.4 * np.sin(2 * np.pi * (330 + 110 * c) * t) + 0.05 * rng.standard_normal(t.size)
        for c in range(channels)
    ]
    wave = np.stack(columns, axis=1)
    if bits == 16:
        return (wave * 32767).astype(np.int16)
    samples: npt.NDArray[np.int32] = (wave * (2 ** (bits - 1) - 1)).astype(np.int32)
    return samples << (32 - bits)


def encode(
    fmt: str,
    codec: str,
    pcm: npt.NDArray[Any],
    rate: int,
    *,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> bytes:
    """`pcm` (samples, channels) encoded with `codec` into a `fmt` container, in memory."""
    layout = "mono" if pcm.shape[1] == 1 else "stereo"
    sample_format = "s16" if pcm.dtype == np.int16 else "s32"
    out = io.BytesIO()
    with av.open(out, "w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        if not isinstance(stream, av.AudioStream):
            raise TypeError(f"{codec} is not an audio codec")
        if sample_format == "s32":
            stream.codec_context.format = "s32"  # else the frames are converted to s16 and FLAC stays 16-bit
        stream.codec_context.options = options or {}
        step = rate // 50
        for start in range(0, pcm.shape[0], step):
            chunk = np.ascontiguousarray(pcm[start : start + step]).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(chunk, format=sample_format, layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out.getvalue()


def reference(data: bytes) -> Reference:
    with av.open(io.BytesIO(data), "r") as container:
        stream = container.streams.audio[0]
        packets = tuple(bytes(packet) for packet in container.demux(stream) if packet.size)
        context = stream.codec_context
        sample_rate, channels, delay = context.sample_rate, context.channels, context.delay
        extradata = context.extradata or b""
    with av.open(io.BytesIO(data), "r") as container:
        decoded = sum(frame.samples for frame in container.decode(container.streams.audio[0]))
    return Reference(
        packets=packets,
        sample_rate=sample_rate,
        channels=channels,
        delay=delay,
        extradata=extradata,
        decoded_samples=decoded,
    )


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def feed_in_chunks(feed: Callable[[bytes], list[bytes]], data: bytes, size: int) -> list[bytes]:
    packets: list[bytes] = []
    for chunk in chunks(data, size):
        packets += feed(chunk)
    return packets


def decode(codec: str, extradata: bytes, packets: Sequence[bytes]) -> npt.NDArray[Any]:
    """Decode `packets` with a bare decoder given `extradata`: (samples, channels)."""
    context = av.CodecContext.create(codec, "r")
    context.extradata = extradata
    return _pcm([*(av.Packet(packet) for packet in packets), None], context)


def parse_and_decode(codec: str, extradata: bytes, pieces: Sequence[bytes]) -> npt.NDArray[Any]:
    """Split raw `pieces` of a stream into packets with FFmpeg's parser, then decode them."""
    context = av.CodecContext.create(codec, "r")
    context.extradata = extradata
    packets: list[Any] = []
    for piece in pieces:
        if piece:  # empty input means "flush" to PyAV, and feeding FFmpeg's FLAC parser after one crashes
            packets += context.parse(piece)
    # Each flush call yields at most one of the frames the parser holds back; the first may yield none.
    empty = 0
    while empty < 2:
        flushed = context.parse(None)
        packets += flushed
        empty = 0 if flushed else empty + 1
    return _pcm([*packets, None], context)


def _pcm(packets: Sequence[Any], context: Any) -> npt.NDArray[Any]:
    blocks = []
    for packet in packets:
        for frame in context.decode(packet):
            array = frame.to_ndarray()
            blocks.append(
                array.T if frame.format.is_planar else array.reshape(-1, len(frame.layout.channels))
            )
    return np.concatenate(blocks)


@dataclass(frozen=True, slots=True)
class Sample:
    """An encoded file, the PCM it was encoded from, and FFmpeg's view of it."""

    data: bytes
    pcm: npt.NDArray[Any]
    rate: int
    ref: Reference


def make_sample(
    fmt: str,
    codec: str,
    rate: int,
    channels: int,
    *,
    bits: int = 16,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Sample:
    pcm = signal(rate, channels, bits=bits)
    data = encode(fmt, codec, pcm, rate, options=options, container_options=container_options)
    return Sample(data=data, pcm=pcm, rate=rate, ref=reference(data))
