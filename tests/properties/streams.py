"""Small valid streams of each compressed format a session takes, encoded at test time with PyAV
(FFmpeg's muxers and encoders); the ways a client may cut them up or damage them; and what a
session records from them, checked on the way for what must hold whatever the bytes."""

import functools
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import hypothesis.strategies as st

from tests.audio import encode, opus_packets, tone_and_noise
from tests.unit.transcoder_containers.media import encode as encode_with_options
from voxbus.transcoder import wav
from voxbus.transcoder.containers import ContainerError, FlacStream, OggDemuxer, WebmDemuxer
from voxbus.transcoder.containers.xiph import xiph_unlace
from voxbus.transcoder.decoders import DecodeError
from voxbus.transcoder.pipeline import COMPRESSED_ALLOWANCE_SECONDS, COMPRESSED_MS_PER_BYTE, SessionPipeline


@dataclass(frozen=True, slots=True)
class Stream:
    """An encoded stream and the session that takes it: `codec` as `?format=` names it in the
    pipeline, recorded at the stream's own rate and channels (no resampling in the way)."""

    name: str
    codec: str
    rate: int
    channels: int
    data: bytes


SECONDS = 0.2
# name: (session codec, container, encoder, rate, channels, encoder options, muxer options)
_RECIPES: dict[str, tuple[str, str, str, int, int, dict[str, str], dict[str, str]]] = {
    "ogg-opus": ("ogg", "ogg", "libopus", 48000, 1, {}, {}),
    "ogg-vorbis": ("ogg", "ogg", "vorbis", 44100, 2, {"strict": "experimental"}, {}),
    # what a browser's MediaRecorder writes: a Segment and Clusters of unknown size
    "webm-opus": ("webm", "webm", "libopus", 48000, 2, {}, {"live": "1"}),
    "webm-vorbis": ("webm", "webm", "vorbis", 44100, 2, {"strict": "experimental"}, {}),
    "flac": ("flac", "flac", "flac", 16000, 1, {}, {}),
    "aac": ("aac", "adts", "aac", 16000, 1, {}, {}),
    "mp3": ("mp3", "mp3", "libmp3lame", 16000, 1, {}, {}),
}
STREAMS = tuple(_RECIPES)
CONTAINERS = ("ogg-opus", "ogg-vorbis", "webm-opus", "webm-vorbis", "flac")
"""The streams voxbus's own demuxers read (the others go to FFmpeg's parsers whole)."""


@functools.cache
def stream(name: str) -> Stream:
    codec, container, encoder, rate, channels, options, muxer_options = _RECIPES[name]
    pcm = tone_and_noise(SECONDS, rate, channels)
    if options or muxer_options:
        data = encode_with_options(
            container, encoder, pcm, rate, options=options, container_options=muxer_options
        )
    else:
        data = encode(pcm, rate, container=container, codec=encoder, bit_rate=32_000)
    return Stream(name=name, codec=codec, rate=rate, channels=channels, data=data)


@functools.cache
def opus_packets_of(channels: int) -> tuple[bytes, ...]:
    """0.1 s of real Opus packets (20 ms each)."""
    return tuple(opus_packets(tone_and_noise(0.1, 48000, channels), 48000))


@functools.cache
def vorbis_headers() -> tuple[bytes, bytes, bytes, tuple[bytes, ...]]:
    """The three Vorbis header packets of a real stream, and its first audio packets."""
    demuxer = OggDemuxer()
    audio = demuxer.feed(stream("ogg-vorbis").data)
    assert demuxer.info is not None
    ident, comment, setup = xiph_unlace(demuxer.info.extradata, 0)
    return ident, comment, setup, tuple(audio[:6])


def pieces(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """`data` cut at each of `cuts` (sorted offsets; a repeated offset makes an empty piece)."""
    bounds = [0, *cuts, len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


def cuts(size: int) -> st.SearchStrategy[list[int]]:
    """Where a client's chunks end: anywhere, or every n bytes."""
    anywhere = st.lists(st.integers(0, size), max_size=24).map(sorted)
    regular = st.integers(1, 4096).map(lambda step: list(range(step, size, step)))
    return st.one_of(anywhere, regular)


@st.composite
def damaged(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few edits: bytes flipped or set, ranges deleted, inserted, repeated, or the
    end cut off. Edits land in the first 512 bytes (the headers) half of the time."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.one_of(st.integers(0, min(len(out), 512)), st.integers(0, len(out))))
        edit = draw(st.sampled_from(("flip", "set", "delete", "insert", "repeat", "truncate")))
        if edit == "flip" and at < len(out):
            out[at] ^= draw(st.integers(1, 255))
        elif edit == "set" and at < len(out):
            out[at] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)))
        elif edit == "delete":
            del out[at : at + draw(st.integers(1, 64))]
        elif edit == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif edit == "repeat":
            out[at:at] = out[at : at + draw(st.integers(1, 256))]
        elif edit == "truncate":
            del out[at:]
    return bytes(out)


HANG_SECONDS = 20.0  # a few KiB decode in milliseconds; this long is a hang on any machine


@dataclass(frozen=True, slots=True)
class Outcome:
    pcm: bytes
    error: str | None


def recorded_or_refused(outcome: Outcome, channels: int) -> bool:
    """What a client sees of any session: whole frames of audio (never a torn sample), and, when
    it was refused, a reason it can read."""
    return len(outcome.pcm) % (2 * channels) == 0 and (outcome.error is None or bool(outcome.error.strip()))


def record(source: Stream, chunks: Sequence[bytes]) -> Outcome:
    """What the session records from `chunks`: its PCM, and the error that ended it, if one did.

    Checks on the way what holds whatever the bytes: only a `DecodeError` stops it, with a
    message; what comes out stays within the compressed-audio budget for the bytes received."""
    pipeline = SessionPipeline.for_codec(source.codec, rate=source.rate, channels=source.channels)
    frame_bytes = 2 * source.channels
    out: list[bytes] = []
    received = 0
    started = time.monotonic()
    try:
        for chunk in chunks:
            received += len(chunk)
            out += pipeline.pieces(chunk)
            _within_budget(source.codec, sum(map(len, out)) // frame_bytes, received, source.rate)
        out += pipeline.finish_pieces()
    except DecodeError as exc:
        assert str(exc).strip(), "a DecodeError without a reason"
        return Outcome(pcm=b"".join(out), error=str(exc))
    finally:
        assert time.monotonic() - started < HANG_SECONDS
    _within_budget(source.codec, sum(map(len, out)) // frame_bytes, received, source.rate)
    return Outcome(pcm=b"".join(out), error=None)


def _within_budget(codec: str, frames: int, received: int, rate: int) -> None:
    """WAV: a frame per byte at most (8-bit mono), at 8 kHz at least, resampled to `rate`.
    Compressed codecs: the pipeline's budget, 20 ms per byte after the first 2 s."""
    if codec == "wav":
        limit = received * rate / wav.MIN_RATE
    else:
        limit = (COMPRESSED_ALLOWANCE_SECONDS + received * COMPRESSED_MS_PER_BYTE / 1000) * rate
    assert frames <= limit + 1, f"{frames} frames out of {received} bytes"


DEMUXERS: dict[str, Callable[[], OggDemuxer | WebmDemuxer | FlacStream]] = {
    "ogg": OggDemuxer,
    "webm": WebmDemuxer,
    "flac": FlacStream,
}


def demux(codec: str, chunks: Sequence[bytes]) -> tuple[object, ...]:
    """The verdict of the demuxer of `codec` ("ogg", "webm", "flac") on `chunks`: the packets (FLAC:
    the frame bytes), the stream's description and whether it was cut short; or that it refused
    them. Checks on the way that it refuses only with a ContainerError that says why, and never
    gives more packet bytes than came in."""
    demuxer = DEMUXERS[codec]()
    out: list[bytes] = []
    received = 0
    try:
        for chunk in chunks:
            received += len(chunk)
            fed = demuxer.feed(chunk)
            out += [fed] if isinstance(fed, bytes) else fed
            assert sum(map(len, out)) <= received, "more packet bytes than came in"
        demuxer.end()
    except ContainerError as exc:
        assert str(exc).strip(), "a ContainerError without a reason"
        return ("refused",)
    # FLAC's frame bytes come as they arrive (cut where the chunks were); packets are packets
    taken = (b"".join(out),) if isinstance(demuxer, FlacStream) else tuple(out)
    return ("taken", taken, demuxer.info, demuxer.truncated)
