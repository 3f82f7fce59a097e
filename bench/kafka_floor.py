"""Kafka's floor: what one broker gives before voxbus adds anything, the baselines voxbus's figures
are compared with.

On one broker (a local process from voxbus.devinfra, or KAFKA_BOOTSTRAP_SERVERS), each run on a
fresh 1-partition topic of its own, with 640-byte records (20 ms of 16 kHz mono s16le):

- aiokafka hop, linger 0: an `AIOKafkaProducer(acks="all", enable_idempotence=True, linger_ms=0)`
  sends one record every 20 ms; an `AIOKafkaConsumer` assigned to the partition (no group;
  fetch_max_wait_ms=500 and fetch_min_bytes=1, aiokafka's defaults and what voxbus's partition tail
  keeps: the broker answers a fetch as soon as a record is there) reads it. Latency = the
  consumer's `time.time()` when the record is handed over - the `time.time()` before the send,
  carried in the record's first 8 bytes.
- aiokafka hop, linger 2: the same with linger_ms=2, voxbus's producer setting (KAFKA_LINGER_MS).
- voxbus bus hop: `bench.harness.kafka_hop_ms`, the same through voxbus's own `KafkaBus` and
  partition tail (KAFKA_LINGER_MS, 640-byte values beginning with the send time as text).
- Kafka's `org.apache.kafka.tools.EndToEndLatency` (kafka-tools jar, from the jars voxbus.devinfra
  fetches): one record at a time, sent, its ack waited for, then polled for (linger 0,
  fetch.max.wait.ms 0, acks=all); its percentiles are whole milliseconds, rounded down.
- Kafka's `org.apache.kafka.tools.ProducerPerformance`: as many records as fast as it can
  (acks=all, linger.ms=2, the Java producer's other defaults: idempotent, 16 KB batches); its
  MB/s are MiB/s, its latency is send to ack.

With a broker on this machine (the one listening on the bootstrap port): its CPU per record during
the aiokafka hops and ProducerPerformance; at one record per 20 ms that includes what the broker
does at rest, which is printed too. Before anything is measured an unmeasured ProducerPerformance
run warms the broker's JIT compiler up, and each run begins once the broker is idle (under 5 % of a
core for a second). Prints a table; `--json PATH` also writes the figures as one JSON object.

Usage: scripts/bootstrap.sh test   (once: Java 17+, Maven and the Kafka jars, kafka-tools among them)
       uv run python bench/kafka_floor.py [--records 500] [--e2e-records 5000]
           [--tool-records 200000] [--warmup-records 100000] [--json PATH] [--smoke]
"""

import argparse
import asyncio
import json
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.harness import broker_pids, cpu_seconds, kafka_hop_ms, percentile, wait_idle
from voxbus.devinfra import kafka_tools_classpath, provide_kafka
from voxbus.devinfra.errors import SourceFailed

RECORD_BYTES = 640  # 20 ms of 16 kHz mono s16le
INTERVAL_S = 0.02  # one record every 20 ms: one stream's frames
FETCH_MAX_WAIT_MS = 500
VOXBUS_LINGER_MS = 2  # KAFKA_LINGER_MS's default (voxbus.common.settings)
TOOL_LINGER_MS = VOXBUS_LINGER_MS
HOP_TIMEOUT_S = 30.0  # after the last send, for the rest to come back
TOOL_TIMEOUT_S = 600.0
SETUP = "run `scripts/bootstrap.sh test` (it installs Java 17+ and Maven and fetches the Kafka jars)"
E2E_CLASS = "org.apache.kafka.tools.EndToEndLatency"
PERF_CLASS = "org.apache.kafka.tools.ProducerPerformance"
# the Java tools print numbers with the default locale's decimal mark: English, so they parse
JAVA_OPTIONS = ("-Duser.language=en", "-Duser.country=US")
PADDING = bytes(RECORD_BYTES - 8)

E2E_AVERAGE = re.compile(r"Avg latency: ([\d.]+) ms")
E2E_PERCENTILES = re.compile(r"Percentiles: 50th = (\d+), 99th = (\d+), 99\.9th = (\d+)")
PERF_SUMMARY = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency,"
    r" ([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99\.9th"
)

# (records, e2e records, tool records, warm-up records) without and with --smoke
DEFAULTS = (500, 5000, 200_000, 100_000)
SMOKE = (30, 500, 2000, 1000)


class FloorError(RuntimeError):
    """A run that did not complete: the script fails with this, it never skips a run."""


class BrokerCpu:
    """The CPU seconds the brokers `pids` use over a `with` block; None without any. (Not
    harness.CpuWatch: it also reads every other broker on this machine, and a test run's broker
    that stops meanwhile makes it fail.)"""

    def __init__(self, pids: Sequence[int]) -> None:
        self._pids = list(pids)
        self._start = 0.0
        self.seconds: float | None = None

    def __enter__(self) -> "BrokerCpu":
        self._start = sum(map(cpu_seconds, self._pids))
        return self

    def __exit__(self, *_: object) -> None:
        if self._pids:
            self.seconds = sum(map(cpu_seconds, self._pids)) - self._start


def us_per_record(broker_seconds: float | None, records: int) -> float | None:
    return None if broker_seconds is None else 1e6 * broker_seconds / max(records, 1)


@dataclass(frozen=True, slots=True)
class Hop:
    """One hop run: latencies in ms, sorted; the broker's CPU seconds while it ran (None: not measured)."""

    ms: list[float]
    broker_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "p50_ms": percentile(self.ms, 0.5),
            "p99_ms": percentile(self.ms, 0.99),
            "max_ms": self.ms[-1],
            "count": len(self.ms),
            "broker_us_per_record": us_per_record(self.broker_seconds, len(self.ms)),
        }


@dataclass(frozen=True, slots=True)
class EndToEnd:
    """EndToEndLatency's own figures (whole ms, rounded down, but the average)."""

    p50_ms: float
    p99_ms: float
    p999_ms: float
    avg_ms: float
    count: int


@dataclass(frozen=True, slots=True)
class Throughput:
    """ProducerPerformance's own summary line, and the broker's CPU while it ran."""

    records_per_s: float
    mb_per_s: float
    avg_latency_ms: float
    p50_ms: float
    p99_ms: float
    record_bytes: int
    records: int
    broker_seconds: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "records_per_s": self.records_per_s,
            "mb_per_s": self.mb_per_s,
            "avg_latency_ms": self.avg_latency_ms,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "record_bytes": self.record_bytes,
            "broker_us_per_record": us_per_record(self.broker_seconds, self.records),
        }


async def create_topic(bootstrap_servers: str, topic: str) -> None:
    """A 1-partition topic, replication factor 1."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="bench-floor")
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()


async def aiokafka_hop(
    bootstrap_servers: str, topic: str, count: int, linger_ms: int, brokers: list[int]
) -> Hop:
    """One record every 20 ms, produced with plain aiokafka and read back by a partition consumer."""
    await create_topic(bootstrap_servers, topic)
    tp = TopicPartition(topic, 0)
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id="bench-floor",
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
    )
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id="bench-floor",
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    hops: list[float] = []

    async def read() -> None:
        while len(hops) < count:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            now = time.time()
            for record in batches.get(tp, []):
                hops.append(1000 * (now - struct.unpack_from(">d", record.value)[0]))

    await producer.start()
    try:
        await consumer.start()
        try:
            consumer.assign([tp])
            await consumer.seek_to_end(tp)
            await consumer.position(tp)  # resolve "end" now, not at the first fetch
            await producer.partitions_for(topic)  # the topic's metadata now, not in the first send
            reader = asyncio.create_task(read())
            deliveries = []
            with BrokerCpu(brokers) as cpu:
                start = time.monotonic()
                for n in range(count):
                    if (wait := start + n * INTERVAL_S - time.monotonic()) > 0:
                        await asyncio.sleep(wait)
                    value = struct.pack(">d", time.time()) + PADDING
                    deliveries.append(await producer.send(topic, value, partition=0))
                try:
                    async with asyncio.timeout(HOP_TIMEOUT_S):
                        await reader
                except TimeoutError:
                    raise FloorError(
                        f"aiokafka hop (linger {linger_ms}): {len(hops)} of {count} records came back"
                        f" within {HOP_TIMEOUT_S:.0f} s of the last send"
                    ) from None
            await asyncio.gather(*deliveries)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
    return Hop(sorted(hops), cpu.seconds)


def java() -> str:
    """`java` on PATH, or a clear failure."""
    found = shutil.which("java")
    if found is None:
        raise FloorError(f"`java` is not on PATH, and Kafka's own tools need it: {SETUP}")
    return found


def tools_classpath() -> str:
    """The kafka-tools jar and what it needs (fetched with Maven if it is not yet), or a clear failure."""
    try:
        return kafka_tools_classpath()
    except SourceFailed as exc:
        raise FloorError(f"the Kafka tools jar is missing and could not be fetched ({exc}): {SETUP}") from exc


def run_tool(command: list[str], what: str) -> str:
    """Its stdout; a failure carries the end of its output."""
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise FloorError(f"{what} did not finish within {TOOL_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        output = (done.stdout + done.stderr).strip()[-3000:]
        raise FloorError(f"{what} exited with {done.returncode}; its output ends with:\n{output}")
    return done.stdout


def end_to_end_latency(tool: list[str], bootstrap_servers: str, topic: str, count: int) -> EndToEnd:
    asyncio.run(create_topic(bootstrap_servers, topic))
    arguments = ["--bootstrap-server", bootstrap_servers, "--topic", topic, "--num-records", str(count)]
    arguments += ["--producer-acks", "all", "--record-size", str(RECORD_BYTES)]
    out = run_tool([*tool, E2E_CLASS, *arguments], "EndToEndLatency")
    average, percentiles = E2E_AVERAGE.search(out), E2E_PERCENTILES.search(out)
    if average is None or percentiles is None:
        raise FloorError(f"EndToEndLatency printed no figures this script knows:\n{out[-2000:]}")
    p50, p99, p999 = (float(value) for value in percentiles.groups())
    return EndToEnd(p50_ms=p50, p99_ms=p99, p999_ms=p999, avg_ms=float(average.group(1)), count=count)


def perf_arguments(bootstrap_servers: str) -> list[str]:
    """ProducerPerformance's arguments but the topic and the count: 640-byte records, unthrottled."""
    return [
        *("--bootstrap-server", bootstrap_servers, "--record-size", str(RECORD_BYTES), "--throughput", "-1"),
        *("--command-property", "acks=all", f"linger.ms={TOOL_LINGER_MS}"),
    ]


def producer_performance(
    tool: list[str], bootstrap_servers: str, topic: str, count: int, brokers: list[int]
) -> Throughput:
    asyncio.run(create_topic(bootstrap_servers, topic))
    arguments = [*perf_arguments(bootstrap_servers), "--topic", topic, "--num-records", str(count)]
    with BrokerCpu(brokers) as cpu:
        out = run_tool([*tool, PERF_CLASS, *arguments], "ProducerPerformance")
    summaries = PERF_SUMMARY.findall(out)
    if not summaries:
        raise FloorError(f"ProducerPerformance printed no summary this script knows:\n{out[-2000:]}")
    sent, per_s, mb_per_s, average, _, p50, _, p99, _ = summaries[-1]
    return Throughput(
        records_per_s=float(per_s),
        mb_per_s=float(mb_per_s),
        avg_latency_ms=float(average),
        p50_ms=float(p50),
        p99_ms=float(p99),
        record_bytes=RECORD_BYTES,
        records=int(sent),
        broker_seconds=cpu.seconds,
    )


def settle(brokers: list[int]) -> None:
    """Wait for the broker to be idle, so a run does not pay for the one before."""
    if brokers and not wait_idle(brokers):
        print("(the broker was still busy after 30 s; measuring anyway)")


def idle_cores(brokers: list[int], seconds: float = 2.0) -> float | None:
    """The brokers' CPU at rest, in cores; None without any."""
    with BrokerCpu(brokers) as cpu:
        time.sleep(seconds)
    return None if cpu.seconds is None else cpu.seconds / seconds


@dataclass(frozen=True, slots=True)
class Floor:
    linger0: Hop
    linger2: Hop
    bus: Hop
    e2e: EndToEnd
    perf: Throughput
    broker_idle_cores: float | None  # None: no broker on this machine

    def as_json(self) -> dict[str, Any]:
        """The keys bench's report generator reads."""
        return {
            "aiokafka_linger0": self.linger0.as_dict(),
            "aiokafka_linger2": self.linger2.as_dict(),
            "voxbus_bus": self.bus.as_dict(),
            "end_to_end_latency": {
                "p50_ms": self.e2e.p50_ms,
                "p99_ms": self.e2e.p99_ms,
                "p999_ms": self.e2e.p999_ms,
                "avg_ms": self.e2e.avg_ms,
                "count": self.e2e.count,
            },
            "producer_performance": self.perf.as_dict(),
            "broker_idle_cores": self.broker_idle_cores,
        }


def measure(bootstrap_servers: str, args: argparse.Namespace, tool: list[str]) -> Floor:
    brokers = broker_pids(bootstrap_servers)
    run = uuid.uuid4().hex[:8]

    def topic(what: str) -> str:
        return f"kafka-floor-{run}-{what}"

    def hop(linger_ms: int) -> Hop:
        settle(brokers)
        name = topic(f"linger{linger_ms}")
        return asyncio.run(aiokafka_hop(bootstrap_servers, name, args.records, linger_ms, brokers))

    warmup = ["--topic", topic("warmup"), "--num-records", str(args.warmup_records)]
    run_tool(
        [*tool, PERF_CLASS, *perf_arguments(bootstrap_servers), *warmup], "ProducerPerformance (warm-up)"
    )
    settle(brokers)
    idle = idle_cores(brokers)
    linger0, linger2 = hop(0), hop(VOXBUS_LINGER_MS)
    settle(brokers)
    # kafka_hop_ms creates its topic and starts its clients inside the call: the broker's CPU over
    # it would count those too, so none is reported for this run
    bus = Hop(asyncio.run(kafka_hop_ms(bootstrap_servers, topic("bus"), args.records)), None)
    settle(brokers)
    e2e = end_to_end_latency(tool, bootstrap_servers, topic("e2e"), args.e2e_records)
    settle(brokers)
    perf = producer_performance(tool, bootstrap_servers, topic("perf"), args.tool_records, brokers)
    return Floor(linger0, linger2, bus, e2e, perf, idle)


def cpu_cell(us: float | None) -> str:
    return f"{us:13.0f}" if us is not None else f"{'-':>13}"


def report(floor: Floor, bootstrap_servers: str, source: str) -> None:
    print(
        f"Kafka's floor on one broker ({source}, {bootstrap_servers}): {RECORD_BYTES}-byte records,"
        " a fresh 1-partition topic per run, acks=all"
    )
    print(
        f"{'latency':46} {'count':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'avg ms':>7}"
        f" {'broker us/rec':>13}"
    )
    rows = [
        ("aiokafka hop, linger 0, 1 record / 20 ms", floor.linger0),
        (f"aiokafka hop, linger {VOXBUS_LINGER_MS}, 1 record / 20 ms", floor.linger2),
        ("voxbus KafkaBus hop (harness.kafka_hop_ms) [1]", floor.bus),
    ]
    for name, hop in rows:
        figures = hop.as_dict()
        print(
            f"{name:46} {figures['count']:7d} {figures['p50_ms']:7.2f} {figures['p99_ms']:7.2f}"
            f" {figures['max_ms']:7.2f} {statistics.fmean(hop.ms):7.2f}"
            f" {cpu_cell(figures['broker_us_per_record'])}"
        )
    e2e = floor.e2e
    print(
        f"{'EndToEndLatency, send/ack/poll [2]':46} {e2e.count:7d} {e2e.p50_ms:7.0f} {e2e.p99_ms:7.0f}"
        f" {e2e.p999_ms:7.0f} {e2e.avg_ms:7.2f} {cpu_cell(None)}"
    )
    perf = floor.perf
    print(
        f"throughput: ProducerPerformance, {perf.records:,} records, acks=all linger.ms={TOOL_LINGER_MS}:"
        f" {perf.records_per_s:,.0f} records/s ({perf.mb_per_s:.2f} MiB/s), send -> ack avg"
        f" {perf.avg_latency_ms:.1f} / p50 {perf.p50_ms:.0f} / p99 {perf.p99_ms:.0f} ms,"
        f" broker {cpu_cell(us_per_record(perf.broker_seconds, perf.records)).strip()} us/record"
    )
    print("[1] voxbus's producer settings (KAFKA_LINGER_MS), 640-byte values; the broker's CPU not measured")
    print("[2] Kafka's own tool: linger 0, fetch.max.wait.ms 0; whole ms rounded down; max = its p99.9")
    if floor.broker_idle_cores is None:
        print("no broker listens on the bootstrap port on this machine: its CPU is not measured")
    else:
        print(
            f"the broker at rest: {floor.broker_idle_cores:.3f} cores, i.e."
            f" {1e6 * floor.broker_idle_cores * INTERVAL_S:.0f} us per record at 1 record / 20 ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, help=f"records per hop run (default {DEFAULTS[0]})")
    parser.add_argument("--e2e-records", type=int, help=f"EndToEndLatency's records (default {DEFAULTS[1]})")
    parser.add_argument(
        "--tool-records", type=int, help=f"ProducerPerformance's records (default {DEFAULTS[2]:,})"
    )
    parser.add_argument(
        "--warmup-records",
        type=int,
        help=f"ProducerPerformance's records before anything is measured (default {DEFAULTS[3]:,})",
    )
    parser.add_argument("--json", type=Path, help="also write the results here, as one JSON object")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="tiny counts, to check that the script works (records / e2e / tool / warm-up: "
        + " / ".join(map(str, SMOKE))
        + ")",
    )
    args = parser.parse_args()
    for name, default, smoke in zip(
        ("records", "e2e_records", "tool_records", "warmup_records"), DEFAULTS, SMOKE, strict=True
    ):
        if getattr(args, name) is None:
            setattr(args, name, smoke if args.smoke else default)
    try:
        tool = [java(), *JAVA_OPTIONS, "-cp", tools_classpath()]  # before the broker: fail early
        with provide_kafka() as kafka:
            floor = measure(kafka.bootstrap_servers, args, tool)
    except FloorError as exc:
        sys.exit(f"bench/kafka_floor.py: {exc}")
    report(floor, kafka.bootstrap_servers, kafka.source)
    if args.json is not None:
        args.json.write_text(json.dumps(floor.as_json(), indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()
