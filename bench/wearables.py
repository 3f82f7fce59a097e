"""Wearables benchmark: concurrent Opus wearables (50 packets/s each) into /ws, over real Kafka and Redis.

Each wearable sends what an Omi-style device does: raw Opus packets (libopus, restricted low-delay,
20 ms at 16 kHz mono, 32 kbit/s, espeak-ng speech), one bare binary message every 20 ms paced
against the clock, the first of which opens a session (the server answers `session-started` with
its id), and `audio-stop` at the end. `voxbus serve ingest`, `transcoder` and `writer` run as
separate processes over real Kafka and Redis (local processes from voxbus.devinfra, or
KAFKA_BOOTSTRAP_SERVERS / REDIS_URL). For each load (`--streams 5 10 20` runs several), after
`--warmup` seconds of load at the largest one, it prints the medians over `--repeat` runs of:

- CPU per stream-second of audio (from /proc) of the transcoder, the writer and ingest, each
  run's window being from the first packet sent until every packet's PCM is in its file;
- the baseline, measured after each run in this process on the same packets (one decoder per
  stream): a plain opuslib decode loop, and the ratio of the transcoder's cost to it; also, for
  the floor under both, the same loop with the transcoder's own decoder
  (voxbus.transcoder.opus.LibopusDecoder: opuslib's `decode` allocates a buffer per packet);
- socket-to-file latency p50/p95/p99: from the client sending a packet to that packet's PCM
  being in the session's WAV (`<AUDIO_STORAGE_PATH>/<session_id>.wav`: a 44-byte header, then
  640 bytes per packet, so packet k is there once the file holds 44 + 640 (k+1) bytes). A
  watcher in this process stats the open sessions' files every 10 ms (so it adds up to 10 ms).
  The writer appends each consumed batch, then flushes its files (the size grows) and fsyncs
  them before it records them as durable: what is measured is the moment the PCM is visible in
  the file, a flush+fsync before it is durable; the writer's own mean flush+fsync time per batch
  (its `voxbus_writer_flush_seconds`) is printed next to it.

Then the services' idle CPU (a fixed cost inside every per-stream figure, largest at small loads),
the streams a core carries at these costs, and where the machine's CPU went in each load (servers,
local Kafka broker, load generator: they share its cores).

Targets (issue #12): transcoder CPU per stream-second ≤ 1.5x the plain libopus loop's; socket-to-file
p99 ≤ 1 s.

Usage: uv run python bench/wearables.py [--streams 10] [--seconds 20] [--warmup 10] [--repeat 3]
       VOXBUS_PROFILE=transcoder.raw ... (with py-spy on PATH: a profile of the transcoder during the
       first run at the largest load)
"""

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import opuslib

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import (
    CpuShare,
    CpuWatch,
    add_warmup_argument,
    cpu_seconds,
    serve,
    stop_processes,
    voxbus_env,
    wait_idle,
    wait_ready,
)
from tests.helpers import free_port
from tests.wearable import OPUS_MAX_FRAME, RATE, STOP, omi_packets
from voxbus.transcoder.opus import LibopusDecoder

PACKET_SECONDS = 0.02
WAV_HEADER = 44  # the writer's canonical header (voxbus.writer.wavfile.HEADER_SIZE)
PACKET_PCM = 640  # one packet's PCM in the file: 320 frames of 16-bit mono
POLL_SECONDS = 0.01
SETTLE_SECONDS = 30.0  # after the last audio-stop, for the files to take the last packets
SERVICES = ("ingest", "transcoder", "writer")


@dataclass(slots=True)
class Wearable:
    """One stream as the client and the watcher see it."""

    sent_at: list[float] = field(default_factory=list)  # perf_counter per packet, by index
    wav: Path | None = None  # from session-started
    in_file: int = 0  # packets whose PCM the file holds
    errors: list[str] = field(default_factory=list)  # Wyoming error events
    stopped: asyncio.Event = field(default_factory=asyncio.Event)  # session-stopped came


async def read_events(ws: aiohttp.ClientWebSocketResponse, storage: Path, wearable: Wearable) -> None:
    async for message in ws:
        if message.type != aiohttp.WSMsgType.TEXT:
            wearable.errors.append(f"unexpected {message.type.name} message")
            continue
        event = message.json()
        kind, data = event.get("type"), event.get("data") or {}
        if kind == "session-started":
            wearable.wav = storage / f"{data['session_id']}.wav"
        elif kind == "session-stopped":
            wearable.stopped.set()
        elif kind == "error":
            wearable.errors.append(f"{data.get('code')}: {data.get('text')}")
    if ws.close_code not in (None, 1000):
        wearable.errors.append(f"closed {ws.close_code}")


async def stream(
    url: str, storage: Path, packets: Sequence[bytes], start_delay: float, wearable: Wearable
) -> None:
    """One wearable: bare packets at real time, then audio-stop; back once the session is stopped."""
    await asyncio.sleep(start_delay)
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        reader = asyncio.create_task(read_events(ws, storage, wearable), name="wearable-events")
        try:
            begin = time.perf_counter()
            for n, packet in enumerate(packets):
                await asyncio.sleep(max(0.0, begin + n * PACKET_SECONDS - time.perf_counter()))
                if ws.closed:  # the server ended the stream: say why, not a traceback of the send
                    raise RuntimeError(
                        f"the server closed a wearable's socket ({ws.close_code}): {wearable.errors}"
                    )
                wearable.sent_at.append(time.perf_counter())
                await ws.send_bytes(packet)
            await ws.send_str(STOP)
            async with asyncio.timeout(SETTLE_SECONDS):
                await wearable.stopped.wait()
        finally:
            await ws.close()
            await reader


class Watcher:
    """Stats the sessions' WAV files every POLL_SECONDS; for each packet whose PCM has appeared,
    the time since the client sent it."""

    def __init__(self, wearables: Sequence[Wearable]) -> None:
        self._wearables = wearables
        self.latencies: list[float] = []

    def poll(self) -> bool:
        """Take what the files hold now; whether every packet sent is in its file."""
        now, complete = time.perf_counter(), True
        for wearable in self._wearables:
            sent = len(wearable.sent_at)
            if wearable.wav is not None and wearable.in_file < sent:
                try:
                    size = os.stat(wearable.wav).st_size
                except FileNotFoundError:
                    size = 0
                held = min(max(0, (size - WAV_HEADER) // PACKET_PCM), sent)
                self.latencies.extend(now - wearable.sent_at[k] for k in range(wearable.in_file, held))
                wearable.in_file = max(wearable.in_file, held)
            complete = complete and wearable.wav is not None and wearable.in_file == sent
        return complete

    async def run(self, sending: asyncio.Future[list[None]]) -> None:
        """Until the clients are done and every packet is in its file, or SETTLE_SECONDS after
        (at once if a client failed)."""
        deadline = float("inf")
        while True:
            await asyncio.sleep(POLL_SECONDS)
            complete = self.poll()
            if sending.done():
                if complete or sending.exception() is not None or time.monotonic() > deadline:
                    return
                deadline = min(deadline, time.monotonic() + SETTLE_SECONDS)


async def scrape(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    """A service's /metrics: each sample name's value, summed over its labels."""
    async with http.get(url) as response:
        text = await response.text()
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("{", 1)[0].split(" ", 1)[0], float(line.rsplit(" ", 1)[1])
            samples[name] = samples.get(name, 0.0) + value
    return samples


def growth(before: dict[str, float], after: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


@dataclass(frozen=True, slots=True)
class Run:
    """One measured run at one load. CPU figures in ms per stream-second of audio."""

    stream_seconds: float
    cpu: dict[str, float]  # per service
    opuslib_loop: float
    libopus_loop: float
    latencies_ms: list[float]
    missing: int  # packets sent whose PCM never reached the file
    errors: list[str]
    chunks_per_batch: float  # the transcoder's mean
    flush_ms: float  # the writer's mean flush+fsync per batch
    share: CpuShare

    def percentile(self, q: float) -> float:
        ordered = self.latencies_ms
        return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def decode_loop(
    make: Callable[[], Callable[[bytes], object]], packets: Sequence[bytes], streams: int
) -> float:
    """CPU seconds of this thread to decode `packets` once per stream, a decoder per stream,
    round robin as the streams' packets arrive."""
    decoders = [make() for _ in range(streams)]
    started = time.thread_time()
    for packet in packets:
        for decode in decoders:
            decode(packet)
    return time.thread_time() - started


def opuslib_decoder() -> Callable[[bytes], object]:
    decoder = opuslib.Decoder(RATE, 1)
    return lambda packet: decoder.decode(packet, OPUS_MAX_FRAME)


def libopus_decoder() -> Callable[[bytes], object]:
    return LibopusDecoder(RATE, 1, OPUS_MAX_FRAME).decode


@dataclass(frozen=True, slots=True)
class Services:
    """The voxbus processes under test and where the writer puts its files."""

    ingest: str  # base URLs
    transcoder: str
    writer: str
    pids: dict[str, int]  # by service name
    storage: Path


async def measure(services: Services, packets: Sequence[bytes], streams: int) -> Run:
    wearables = [Wearable() for _ in range(streams)]
    watcher = Watcher(wearables)
    url = f"{services.ingest}/ws"
    transcoder_metrics, writer_metrics = f"{services.transcoder}/metrics", f"{services.writer}/metrics"
    async with aiohttp.ClientSession() as http:
        transcoder_before, writer_before = (
            await scrape(http, transcoder_metrics),
            await scrape(http, writer_metrics),
        )
        before = {name: cpu_seconds(pid) for name, pid in services.pids.items()}
        with CpuWatch(list(services.pids.values())) as watch:
            sending = asyncio.gather(
                *(stream(url, services.storage, packets, i / streams, w) for i, w in enumerate(wearables))
            )
            try:
                await watcher.run(sending)
            finally:
                await sending
        after = {name: cpu_seconds(pid) for name, pid in services.pids.items()}
        transcoder_after, writer_after = (
            await scrape(http, transcoder_metrics),
            await scrape(http, writer_metrics),
        )
    assert watch.share is not None
    sent = sum(len(w.sent_at) for w in wearables)
    stream_seconds = sent * PACKET_SECONDS
    chunks = growth(transcoder_before, transcoder_after, "voxbus_transcoder_chunks_total")
    batches = growth(transcoder_before, transcoder_after, "voxbus_transcoder_batch_seconds_count")
    flushes = growth(writer_before, writer_after, "voxbus_writer_flush_seconds_count")
    flush_seconds = growth(writer_before, writer_after, "voxbus_writer_flush_seconds_sum")
    return Run(
        stream_seconds=stream_seconds,
        cpu={name: 1000 * (after[name] - before[name]) / stream_seconds for name in services.pids},
        opuslib_loop=1000 * decode_loop(opuslib_decoder, packets, streams) / stream_seconds,
        libopus_loop=1000 * decode_loop(libopus_decoder, packets, streams) / stream_seconds,
        latencies_ms=sorted(1000 * latency for latency in watcher.latencies),
        missing=sent - sum(w.in_file for w in wearables),
        errors=[error for w in wearables for error in w.errors],
        chunks_per_batch=chunks / batches if batches else float("nan"),
        flush_ms=1000 * flush_seconds / flushes if flushes else float("nan"),
        share=watch.share,
    )


def idle_cpu(pids: dict[str, int], seconds: float = 5.0) -> dict[str, float]:
    """Each service's CPU with no streams: ms per second."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: 1000 * (cpu_seconds(pid) - before[name]) / seconds for name, pid in pids.items()}


def median(runs: Sequence[Run], value: Callable[[Run], float]) -> float:
    return statistics.median(value(run) for run in runs)


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """One load's runs: medians (CPU in ms per stream-second), the worst `missing`, every error."""

    streams: int
    cpu: dict[str, float]
    opuslib_loop: float
    libopus_loop: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    chunks_per_batch: float
    flush_ms: float
    missing: int
    errors: list[str]
    share: CpuShare

    @classmethod
    def of(cls, streams: int, runs: Sequence[Run]) -> "Summary":
        brokers = [run.share.broker for run in runs if run.share.broker is not None]
        return cls(
            streams=streams,
            cpu={name: statistics.median(run.cpu[name] for run in runs) for name in SERVICES},
            opuslib_loop=median(runs, lambda run: run.opuslib_loop),
            libopus_loop=median(runs, lambda run: run.libopus_loop),
            p50_ms=median(runs, lambda run: run.percentile(0.5)),
            p95_ms=median(runs, lambda run: run.percentile(0.95)),
            p99_ms=median(runs, lambda run: run.percentile(0.99)),
            chunks_per_batch=median(runs, lambda run: run.chunks_per_batch),
            flush_ms=median(runs, lambda run: run.flush_ms),
            missing=max(run.missing for run in runs),
            errors=[error for run in runs for error in run.errors],
            share=CpuShare(
                machine=median(runs, lambda run: run.share.machine),
                server=median(runs, lambda run: run.share.server),
                broker=statistics.median(brokers) if brokers else None,
                load_generator=median(runs, lambda run: run.share.load_generator),
            ),
        )

    @property
    def ratio(self) -> str:
        """The transcoder's CPU over the plain opuslib loop's."""
        if self.opuslib_loop <= 0:  # a tiny load can finish inside one CPU-clock tick
            return "n/a"
        return f"{self.cpu['transcoder'] / self.opuslib_loop:.2f}x"

    def row(self) -> str:
        transcoder = f"{self.cpu['transcoder']:10.3f} {self.opuslib_loop:12.3f} {self.ratio:>6}"
        context = f"{self.libopus_loop:11.3f} {self.chunks_per_batch:12.1f}"
        others = f"{self.cpu['writer']:7.3f} {self.cpu['ingest']:7.3f}"
        latency = f"{self.p50_ms:11.1f} {self.p95_ms:7.1f} {self.p99_ms:7.1f} {self.missing:7d}"
        return f"{self.streams:7d} {transcoder} {context} {others} {latency}"


HEADER = (
    f"{'streams':>7} {'transcoder':>10} {'opuslib loop':>12} {'ratio':>6} {'own decoder':>11}"
    f" {'chunks/batch':>12} {'writer':>7} {'ingest':>7}"
    f" {'file p50 ms':>11} {'p95 ms':>7} {'p99 ms':>7} {'missing':>7}"
)


def per_core(ms_per_stream_second: float) -> str:
    return f"{1000 / ms_per_stream_second:.0f}" if ms_per_stream_second > 0 else "n/a"


def report(
    summaries: list[Summary], idle: dict[str, float], busy: list[str], args: argparse.Namespace
) -> None:
    loads = ", ".join(str(summary.streams) for summary in summaries)
    print(
        f"{loads} wearables: raw Opus packets into /ws (libopus restricted low-delay, 20 ms at 16 kHz mono,"
        " 32 kbit/s, espeak-ng speech), 50 packets/s each"
    )
    print(
        f"{args.seconds:g} s per run, median of {args.repeat}, after {args.warmup:g} s of warm-up at"
        f" {max(args.streams)} streams; CPU in ms per stream-second of audio (from /proc); baselines: the"
        " same packets decoded in this process, a decoder per stream (ratio = transcoder / opuslib loop;"
        " own decoder: the transcoder's LibopusDecoder in the same loop); chunks/batch: the transcoder's"
        " mean packets per consumed batch, over which its per-batch work is spread"
    )
    print(HEADER)
    for summary in summaries:
        print(summary.row())
    ratios = ", ".join(f"{s.streams} streams {s.ratio}" for s in summaries)
    print(f"transcoder CPU per stream-second over the plain opuslib loop's (target ≤ 1.5x): {ratios}")
    p99s = ", ".join(f"{s.streams} streams {s.p99_ms:.0f} ms" for s in summaries)
    print(f"socket-to-file p99 (target ≤ 1000 ms): {p99s}")
    flushes = ", ".join(f"{s.streams} streams {s.flush_ms:.1f} ms" for s in summaries)
    print(
        "socket-to-file: the client's send -> the packet's PCM in its session's WAV (the file's size,"
        f" polled every {1000 * POLL_SECONDS:.0f} ms); the writer then fsyncs it: flush+fsync per batch,"
        f" mean: {flushes}"
    )
    print(
        f"idle, no streams: ingest {idle['ingest']:.1f}, transcoder {idle['transcoder']:.1f}, writer"
        f" {idle['writer']:.1f} ms CPU per second (inside every per-stream figure, divided by the streams)"
    )
    largest = max(summaries, key=lambda summary: summary.streams)
    carried = {
        **largest.cpu,
        "plain opuslib loop": largest.opuslib_loop,
        "LibopusDecoder loop": largest.libopus_loop,
    }
    print(
        f"streams one core carries at the costs measured at {largest.streams} streams (1000 / ms per"
        f" stream-second): {', '.join(f'{name} {per_core(ms)}' for name, ms in carried.items())}"
    )
    for summary in summaries:
        if summary.errors:
            count, first = len(summary.errors), summary.errors[0]
            print(f"{summary.streams} streams: {count} error events, the first: {first}")
    for run in busy:
        print(f"{run}: began with the servers still busy after a 30 s wait (the run before's backlog)")
    for summary in summaries:
        print(f"CPU during {summary.streams} streams: {summary.share.line()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[10], help="loads to run, e.g. 5 10 20")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per stream per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per load; the median is reported")
    add_warmup_argument(parser)
    args = parser.parse_args()
    packets = omi_packets(max(args.seconds, args.warmup) + 0.1)
    measured, warmup = (
        packets[: round(args.seconds / PACKET_SECONDS)],
        packets[: round(args.warmup / PACKET_SECONDS)],
    )
    ports = {name: free_port() for name in SERVICES}
    with voxbus_env(f"benchwear{ports['ingest']}.", max(args.streams)) as env:
        processes = {name: serve(name, port, env) for name, port in ports.items()}
        try:
            for port in ports.values():
                asyncio.run(wait_ready(f"http://127.0.0.1:{port}/ready"))
            services = Services(
                ingest=f"http://127.0.0.1:{ports['ingest']}",
                transcoder=f"http://127.0.0.1:{ports['transcoder']}",
                writer=f"http://127.0.0.1:{ports['writer']}",
                pids={name: process.pid for name, process in processes.items()},
                storage=Path(env["AUDIO_STORAGE_PATH"]),
            )
            if warmup:  # connections, Kafka metadata, the consumers' fetches, the broker's JIT
                asyncio.run(measure(services, warmup, max(args.streams)))
            pids = list(services.pids.values())
            busy: list[str] = []
            wait_idle(pids)
            idle = idle_cpu(services.pids)
            summaries = []
            for streams in args.streams:
                runs = []
                for attempt in range(args.repeat):
                    if not wait_idle(pids):
                        busy.append(f"{streams} streams, run {attempt + 1}")
                    if (
                        (profile := os.environ.get("VOXBUS_PROFILE"))
                        and streams == max(args.streams)
                        and not attempt
                    ):
                        # py-spy, if installed: where the transcoder spends, during this run
                        record = [
                            "py-spy",
                            "record",
                            "-f",
                            "raw",
                            "-o",
                            profile,
                            "-d",
                            str(int(args.seconds)),
                        ]
                        subprocess.Popen([*record, "-p", str(services.pids["transcoder"])])
                    runs.append(asyncio.run(measure(services, measured, streams)))
                summaries.append(Summary.of(streams, runs))
        finally:
            stop_processes(*processes.values())
    report(summaries, idle, busy, args)


if __name__ == "__main__":
    main()
