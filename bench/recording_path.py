"""Recording-path benchmark: realtime factor per core of transcode + write, per input kind.

Runs the transcoder's and writer's batch handlers in this process over the in-process bus and
store (one core, no broker in the way), on 20 ms chunks as clients send them, and prints:
- realtime factor (seconds of audio per second of CPU) for PCM pass-through + write, raw Opus
  (20 ms, 16 kHz) decode + write, and mp3 (44.1 kHz stereo) decode + resample to 16 kHz + write;
- the baseline in the same run: copying the same PCM bytes to a file with plain writes, which is
  the floor any recorder pays;
- each case again over a `--long-minutes` session (default 2 hours: the short session's chunks
  over and over), whose factor must match the short one's: nothing in the path grows with a
  session's length;
- writer throughput over a 1-minute and a 2-hour session (it must stay flat: appends are O(bytes)).

Targets (issue #3): PCM ≥ 2000x, Opus ≥ 300x, mp3 ≥ 150x real time per core.
Usage: uv run python bench/recording_path.py [--repeat 3] [--seconds 60] [--long-minutes 120]
           [--json results.json]
"""

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import write_json
from tests.audio import chunked, encode, opus_packets, speech, tone_and_noise
from voxbus.common.bus.memory import InProcessBus
from voxbus.common.constants import Topic
from voxbus.common.records import AudioChunk, AudioFormat, SessionStart, SessionStop
from voxbus.common.settings import Settings
from voxbus.common.store.memory import InProcessStore
from voxbus.transcoder.worker import TranscodeHandler
from voxbus.writer.worker import WriteHandler

BATCH = 500


async def run_session(codec: str, rate: int, chunks: list[bytes], root: Path) -> float:
    """CPU seconds the transcoder and writer spend on one session, records fed in consumer-sized
    batches (the groups joined first: the in-process bus keeps only the newest records of a topic
    nobody reads yet)."""
    settings = Settings(topic_prefix="bench.", audio_partitions=1, egress_partitions=1, events_partitions=1)
    bus, store = InProcessBus(), InProcessStore()
    await bus.create_topics(settings.topic_partitions())
    raw_topic, pcm_topic = settings.topic(Topic.AUDIO_RAW), settings.topic(Topic.AUDIO_PCM)
    sid, fmt = str(uuid.uuid4()), AudioFormat(codec=codec, rate=rate, channels=1)
    records = [SessionStart(session_id=sid, seq=0, ts_ns=0, format=fmt, protocol="bench").to_message()]
    records += [
        AudioChunk(session_id=sid, seq=n, ts_ns=0, format=fmt, audio=c).to_message()
        for n, c in enumerate(chunks, 1)
    ]
    records.append(SessionStop(session_id=sid, seq=len(chunks) + 1, ts_ns=0, reason="end").to_message())
    transcoder = TranscodeHandler(bus, store, pcm_topic=pcm_topic)
    writer = WriteHandler(
        bus, store, storage=root, segment_seconds=30.0, events_topic=settings.topic(Topic.EVENTS), pod="bench"
    )
    raw_in = bus.group_consumer([raw_topic], group_id="t")
    pcm_in = bus.group_consumer([pcm_topic], group_id="w")
    await raw_in.start()
    await pcm_in.start()
    elapsed = 0.0
    for start in range(0, len(records), BATCH):
        for message in records[start : start + BATCH]:
            await bus.send(raw_topic, message)
        started = time.process_time()
        while batch := await raw_in.getmany(timeout_ms=0, max_records=BATCH):
            await transcoder.handle(batch)
            while written := await pcm_in.getmany(timeout_ms=0, max_records=BATCH):
                await writer.handle(written)
        elapsed += time.process_time() - started
    await raw_in.stop()
    await pcm_in.stop()
    await writer.close()
    return elapsed


def baseline_copy(pcm: bytes, chunk: int, root: Path) -> float:
    """CPU seconds to append the same bytes to a file, chunk by chunk, fsyncing every batch."""
    import os  # noqa: PLC0415

    started = time.process_time()
    with (root / "baseline.raw").open("wb") as out:
        for n, start in enumerate(range(0, len(pcm), chunk)):
            out.write(pcm[start : start + chunk])
            if n % BATCH == BATCH - 1:
                out.flush()
                os.fsync(out.fileno())
    return time.process_time() - started


async def writer_throughput(hours: float, root: Path) -> float:
    """MB of PCM per CPU second the writer sustains over a session this long (16 kHz mono)."""
    second = tone_and_noise(1.0, 16000).tobytes()
    frame = second[:640]
    settings = Settings(topic_prefix="tp.", audio_partitions=1, egress_partitions=1, events_partitions=1)
    bus, store = InProcessBus(), InProcessStore()
    await bus.create_topics(settings.topic_partitions())
    pcm_topic = settings.topic(Topic.AUDIO_PCM)
    writer = WriteHandler(
        bus, store, storage=root, segment_seconds=30.0, events_topic=settings.topic(Topic.EVENTS), pod="tp"
    )
    consumer = bus.group_consumer([pcm_topic], group_id="w")
    await consumer.start()
    sid, fmt = str(uuid.uuid4()), AudioFormat(codec="pcm_s16le", rate=16000, channels=1)
    await bus.send(
        pcm_topic, SessionStart(session_id=sid, seq=0, ts_ns=0, format=fmt, protocol="b").to_message()
    )
    total_frames = int(hours * 3600 * 50)
    cpu, seq = 0.0, 0
    while seq < total_frames:
        for _ in range(min(BATCH, total_frames - seq)):
            seq += 1
            chunk = AudioChunk(session_id=sid, seq=seq, ts_ns=0, format=fmt, audio=frame, pos=(seq - 1) * 320)
            await bus.send(pcm_topic, chunk.to_message())
        batch = await consumer.getmany(timeout_ms=0, max_records=BATCH + 1)
        started = time.process_time()
        await writer.handle(batch)
        cpu += time.process_time() - started
    await consumer.stop()
    await writer.close()
    return total_frames * 640 / 1e6 / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median is reported")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per case (default 60)")
    parser.add_argument(
        "--long-minutes",
        type=float,
        default=120.0,
        help="the long session per case, made of the short one's chunks over and over (default 120; 0: none)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here (for bench/suite.py)")
    args = parser.parse_args()
    seconds = args.seconds
    pcm16 = speech(seconds, 16000)
    cases = {
        "pcm 16k pass-through + write, 4 KB": ("pcm_s16le", 16000, chunked(pcm16.tobytes(), 4096)),
        "pcm 16k pass-through + write, 20 ms": ("pcm_s16le", 16000, chunked(pcm16.tobytes(), 640)),
        "opus 20ms 16k decode + write": ("opus", 16000, opus_packets(pcm16, 16000)),
        "mp3 44.1k stereo → 16k + write, 4 KB": (
            "mp3",
            16000,
            chunked(encode(speech(seconds, 44100, 2), 44100, container="mp3", codec="libmp3lame"), 4096),
        ),
    }
    repeats = max(1, round(60 * args.long_minutes / seconds)) if args.long_minutes > 0 else 0
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        base = statistics.median(baseline_copy(pcm16.tobytes(), 640, root) for _ in range(args.repeat))
        print(f"{'case':40} {'session':>9} {'median CPU s':>12} {'x real time':>12} {'vs baseline':>12}")
        baseline = "baseline: append bytes to a file"
        print(f"{baseline:40} {'':>9} {base:12.4f} {seconds / base:12.0f} {1.0:12.2f}")
        for name, (codec, rate, chunks) in cases.items():
            sessions = [(seconds, chunks, args.repeat)]
            if repeats:  # one run: a long session's cost hardly varies
                sessions.append((seconds * repeats, chunks * repeats, 1))
            for length, session_chunks, runs in sessions:
                cpu = statistics.median(
                    asyncio.run(run_session(codec, rate, session_chunks, root)) for _ in range(runs)
                )
                label, relative = f"{length / 60:.3g} min", cpu * seconds / length / base
                print(f"{name:40} {label:>9} {cpu:12.4f} {length / cpu:12.0f} {relative:11.1f}x")
                rows.append(
                    {
                        "case": name,
                        "codec": codec,
                        "session_seconds": length,
                        "cpu_seconds": cpu,
                        "realtime_factor": length / cpu,
                        "vs_baseline": relative,
                    }
                )
        short = statistics.median(asyncio.run(writer_throughput(1 / 60, root)) for _ in range(args.repeat))
        long_hours = args.long_minutes / 60 if args.long_minutes > 0 else 2.0
        long = statistics.median(asyncio.run(writer_throughput(long_hours, root)) for _ in range(args.repeat))
        print(
            f"writer throughput: 1-minute session {short:.1f} MB/CPU-s, {long_hours:.3g}-hour session"
            f" {long:.1f} MB/CPU-s (ratio {long / short:.2f}; flat = linear cost)"
        )
    write_json(
        args.json,
        {
            "seconds": seconds,
            "baseline": {"cpu_seconds": base, "realtime_factor": seconds / base},
            "cases": rows,
            "writer_mb_per_cpu_second": {"1 min": short, f"{long_hours:.3g} h": long},
        },
    )


if __name__ == "__main__":
    main()
