"""WAV streams as a session (`?format=wav`) takes them, with any header a writer may produce: every
sample format, 1-8 channels, chunks before and after the audio, a data size that is true, unknown
(0, 0xFFFFFFFF) or short. Whatever the chunking, the same audio is recorded; 16-bit PCM in the
session's own format is recorded byte for byte; a damaged header is refused with a DecodeError that
says why, and no WAV stream gives more than one frame per byte at 8 kHz (its least) resampled."""

import struct

import hypothesis.strategies as st
from hypothesis import given

from tests.properties.budget import examples
from tests.properties.streams import Stream, cuts, damaged, pieces, record, recorded_or_refused
from voxbus.common.constants import SAMPLE_RATES
from voxbus.transcoder.wav import MAX_CHANNELS, MAX_RATE, MIN_RATE

# (format tag, bits per sample) of every sample format voxbus reads
_FORMATS = ((1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64), (6, 8), (7, 8))
_UNKNOWN_SIZES = (0, 0xFFFFFFFF, 0x7FFFFFFF)


def chunk(name: bytes, body: bytes) -> bytes:
    return name + struct.pack("<I", len(body)) + body + b"\x00" * (len(body) & 1)


@st.composite
def wav_streams(draw: st.DrawFn, *, pcm16: bool = False) -> tuple[bytes, bytes, int, int]:
    """(stream, its audio bytes, rate, channels)."""
    tag, bits = (1, 16) if pcm16 else draw(st.sampled_from(_FORMATS))
    channels = draw(st.sampled_from((1, 2))) if pcm16 else draw(st.integers(1, MAX_CHANNELS))
    rate = draw(st.sampled_from(SAMPLE_RATES)) if pcm16 else draw(st.integers(MIN_RATE, MAX_RATE))
    align = channels * bits // 8
    audio = draw(st.binary(max_size=64)) * draw(st.integers(0, 40))
    audio = audio[: len(audio) - len(audio) % align]
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    if draw(st.booleans()):  # WAVE_FORMAT_EXTENSIBLE: the tag moves into the sub-format
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * align, align, bits)
        fmt += struct.pack("<HHIH", 22, bits, 0, tag) + bytes(14)
    before = b"".join(chunk(b"LIST", body) for body in draw(st.lists(st.binary(max_size=9), max_size=2)))
    after = b"".join(chunk(b"id3 ", body) for body in draw(st.lists(st.binary(max_size=9), max_size=2)))
    size = draw(st.one_of(st.just(len(audio)), st.sampled_from(_UNKNOWN_SIZES)))
    if after and size in _UNKNOWN_SIZES:
        after = b""  # with no end to the data, what follows it is audio
    pad = b"\x00" if len(audio) % 2 and size == len(audio) else b""  # a chunk of odd size is padded
    body = b"WAVE" + chunk(b"fmt ", fmt) + before + b"data" + struct.pack("<I", size) + audio + pad + after
    return b"RIFF" + struct.pack("<I", len(body)) + body, audio, rate, channels


def session(data: bytes, rate: int, channels: int) -> Stream:
    """The session a client opens for the stream: at a rate it may ask for, mono or stereo."""
    target = rate if rate in SAMPLE_RATES else 16000
    return Stream(name="wav", codec="wav", rate=target, channels=min(channels, 2), data=data)


@examples(150)
@given(wav=wav_streams(), data=st.data())
def test_any_chunking_gives_the_same_audio(wav: tuple[bytes, bytes, int, int], data: st.DataObject) -> None:
    stream, _, rate, channels = wav
    source = session(stream, rate, channels)
    whole = record(source, [stream])
    assert whole.error is None
    assert record(source, pieces(stream, data.draw(cuts(len(stream)), label="cuts"))) == whole


@examples(100)
@given(wav=wav_streams(pcm16=True), data=st.data())
def test_16_bit_pcm_in_the_session_s_format_is_recorded_byte_for_byte(
    wav: tuple[bytes, bytes, int, int], data: st.DataObject
) -> None:
    stream, audio, rate, channels = wav
    source = Stream(name="wav", codec="wav", rate=rate, channels=channels, data=stream)
    recorded = record(source, pieces(stream, data.draw(cuts(len(stream)), label="cuts")))
    assert recorded.error is None
    assert recorded.pcm == audio


@examples(200)
@given(wav=wav_streams(), data=st.data())
def test_a_damaged_stream_is_recorded_or_refused_with_a_reason(
    wav: tuple[bytes, bytes, int, int], data: st.DataObject
) -> None:
    stream, _, rate, channels = wav
    broken = data.draw(damaged(stream), label="damaged")
    source = session(broken, rate, channels)
    outcome = record(source, pieces(broken, data.draw(cuts(len(broken)), label="cuts")))
    assert recorded_or_refused(outcome, source.channels)
