"""What one chunk may cost the transcoder: declared formats within reason, output in bounded
pieces, and compressed input that may not decode to more than 20 ms of audio per byte."""

import struct
import tracemalloc

import numpy as np
import pytest
from prometheus_client import REGISTRY

from tests.audio import opus_packets, speech
from tests.helpers import consume
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.records import AudioChunk, AudioFormat, EchoSettings, SessionStart, new_session_id
from voxbus.common.store.memory import InProcessStore
from voxbus.transcoder.decoders import DecodeError
from voxbus.transcoder.pipeline import PIECE_FRAMES, SessionPipeline
from voxbus.transcoder.worker import TranscodeHandler


def wav_header(*, rate: int, channels: int = 1, tag: int = 7, bits: int = 8) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    unknown = struct.pack("<I", 0xFFFFFFFF)
    return b"RIFF" + unknown + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + unknown


@pytest.mark.parametrize(
    ("rate", "channels", "reason"),
    [
        (1000, 1, "declares a sample rate of 1000 Hz; voxbus takes 8000-384000 Hz"),
        (7999, 2, "declares a sample rate of 7999 Hz"),
        (400_000, 1, "declares a sample rate of 400000 Hz"),
        (16000, 9, "declares 9 channels; voxbus takes 1-8"),
    ],
)
def test_a_wav_header_declaring_an_absurd_format_is_refused(rate: int, channels: int, reason: str) -> None:
    pipeline = SessionPipeline.for_codec("wav", rate=96000, channels=2)
    with pytest.raises(DecodeError, match=reason):
        pipeline.push(wav_header(rate=rate, channels=channels) + bytes(4096))


def test_one_chunk_comes_out_in_bounded_pieces() -> None:
    # 1 MiB of 8 kHz µ-law to 96 kHz stereo: 48 MiB of PCM, never in one piece
    pipeline = SessionPipeline.for_codec("wav", rate=96000, channels=2)
    frames = 1 << 20
    pieces = list(pipeline.pieces(wav_header(rate=8000) + bytes(range(256)) * (frames // 256)))
    pieces += list(pipeline.finish_pieces())
    assert max(len(p) for p in pieces) <= 4 * 2 * PIECE_FRAMES  # soxr releases its output unevenly
    assert sum(len(p) for p in pieces) == 4 * frames * 12


def test_opus_packets_that_decode_to_more_than_20_ms_per_byte_fail() -> None:
    # TOC: CELT fullband 20 ms, code 3; then 6 frames, CBR: 2 bytes that say 120 ms
    pipeline = SessionPipeline.for_codec("opus", rate=48000, channels=1)
    taken = 0
    with pytest.raises(DecodeError, match="more than 20 ms per byte"):
        for _ in range(400):
            pipeline.push(bytes([31 << 3 | 3, 6]))
            taken += 1
    assert 20 <= taken <= 25  # 2 s allowed, then 80 ms over per packet: 3 s of audio at most


def test_opus_at_20_ms_per_byte_is_taken() -> None:
    # one-byte packets (a TOC alone: 20 ms of concealment), as DTX encoders may send them
    pipeline = SessionPipeline.for_codec("opus", rate=16000, channels=1)
    out = b"".join(pipeline.push(bytes([31 << 3])) for _ in range(1000))
    assert len(out) == 1000 * 320 * 2
    real = opus_packets(speech(2.0, 16000), 16000)
    assert len(b"".join(pipeline.push(p) for p in real)) == len(real) * 640
    assert np.frombuffer(out, dtype=np.int16).dtype == np.int16


async def test_a_chunk_decoding_to_48_mib_is_sent_as_it_decodes_not_held_whole() -> None:
    # what the transcoder holds for one chunk, whatever it decodes to: the peak of memory
    # allocated while it handles 1 MiB of 8 kHz µ-law for a 96 kHz stereo session (48 MiB of PCM;
    # nobody reads the PCM topic, so the in-process bus keeps only its newest 4 MiB)
    raw, pcm = "raw", "pcm"
    fmt = AudioFormat(codec="wav", rate=96000, channels=2)
    session_id = new_session_id()
    start = SessionStart(
        session_id=session_id,
        seq=1,
        ts_ns=0,
        format=fmt,
        protocol="session",
        user_id="u",
        echo=EchoSettings(enabled=False, delay_ms=0),
        resume=False,
    )
    audio = wav_header(rate=8000) + bytes(range(256)) * 4096
    chunk = AudioChunk(session_id=session_id, seq=2, ts_ns=0, format=fmt, audio=audio)
    produced = REGISTRY.get_sample_value("voxbus_transcoder_pcm_bytes_total") or 0.0
    async with InProcessBus() as bus, InProcessStore() as store:
        await bus.create_topics({raw: 1, pcm: 1})
        async with bus.group_consumer([raw], group_id="transcoder") as consumer:
            for message in (start.to_message(), chunk.to_message()):
                await bus.send_and_wait(raw, message)
            records = await consume(consumer, 2)
        handler = TranscodeHandler(bus, store, pcm_topic=pcm)
        tracemalloc.start()
        try:
            await handler.handle(records)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    produced = (REGISTRY.get_sample_value("voxbus_transcoder_pcm_bytes_total") or 0.0) - produced
    # every frame came out, but the resampler's tail (held until the stop record, which this
    # stream does not have yet): 0.13 s
    assert 4096 * 256 * 12 * 4 - produced < 0.2 * 96000 * 4
    assert peak < 24 * 1024 * 1024, f"held {peak / 2**20:.0f} MiB for one chunk"
