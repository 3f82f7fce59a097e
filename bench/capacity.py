"""The capacity model: what 1k, 10k and 100k concurrent streams need, from measured per-frame costs.

Costs come from one suite run: the Vonage echo calls over Kafka and Redis at the largest load
(`telephony_distributed`: all five services, the broker and Redis measured together), each
process's CPU per echoed frame less its idle CPU (a fixed cost per instance, listed apart). The
model is linear in frames: N streams of 20 ms frames are 50 N frames/s; a service needs
50 N x cost CPU-seconds per second, spread over instances of one Python process (one event loop:
at most one core each) run at `UTILISATION` of a core. It is checked against the one point this
machine can measure: two ingest instances against one at a load both carry.
"""

import math
from dataclasses import dataclass
from typing import Any

from bench.figures import FRAMES_PER_SECOND, Results, broker_us_per_frame, frames_of, pair, ratio

UTILISATION = 0.5  # of its core an instance runs at: the rest is headroom for bursts and latency
STREAMS = (1_000, 10_000, 100_000)
SERVICES = ("ingest", "telephony", "echo", "transcoder", "writer")
CONSUMERS = ("echo", "transcoder", "writer")  # read the audio topics: one partition per instance at least
BYTES_PER_SECOND = {"16 kHz": 32_000, "8 kHz call": 16_000}  # s16le mono
AUDIO_TOPICS_WRITTEN = 3  # raw audio, PCM, egress (echo): what the broker takes in per stream, at most
REDIS_OPS_PER_SECOND = 100_000  # what one Redis (one thread) is taken to serve of voxbus's small commands


@dataclass(frozen=True, slots=True)
class Costs:
    """CPU µs per 20 ms frame, by service (marginal: idle excluded), the broker's, and Redis commands."""

    services: dict[str, float]
    idle_ms_per_second: dict[str, float]
    broker_us: float
    redis_commands: float
    calls: int  # the load they were measured at


@dataclass(frozen=True, slots=True)
class Plan:
    streams: int
    cores: dict[str, float]  # by service, and "broker"
    instances: dict[str, int]
    audio_partitions: int
    egress_partitions: int
    redis_ops_per_second: float
    kafka_mb_per_second: dict[str, float]  # into the brokers, by stream kind, before replication

    @property
    def total_cores(self) -> float:
        return sum(self.cores.values())

    @property
    def provisioned_cores(self) -> float:
        """A core per instance (one event loop each), and the broker's cores."""
        return sum(self.instances.values()) + self.cores["broker"]


def costs(results: Results) -> Costs:
    ours, _ = pair(results, "telephony_distributed")
    idle = results["telephony_distributed"]["idle_ms_per_second"]
    # a per-frame figure is the CPU of the whole run (its start, the echo delay, the last frames)
    # over the frames echoed: a process's idle CPU comes off it over the same time
    us_per_idle_core = 1e6 * ours["share"]["wall_seconds"] / max(frames_of(ours), 1)
    broker_idle_us = (results["kafka_floor"].get("broker_idle_cores") or 0.0) * us_per_idle_core
    marginal = {
        name: max(us - idle.get(name, 0.0) / 1000 * us_per_idle_core, 0.0)
        for name, us in ours["cpu_us_per_frame"].items()
    }
    return Costs(
        services=marginal,
        idle_ms_per_second={name: idle[name] for name in marginal if name in idle},
        broker_us=max((broker_us_per_frame(ours) or 0.0) - broker_idle_us, 0.0),
        redis_commands=float(ours.get("redis_commands_per_frame") or 0.0),
        calls=int(ours["calls"]),
    )


def plan(measured: Costs, streams: int) -> Plan:
    frames = streams * FRAMES_PER_SECOND
    cores = {name: frames * us / 1e6 for name, us in measured.services.items()}
    instances = {name: max(1, math.ceil(need / UTILISATION)) for name, need in cores.items()}
    cores["broker"] = frames * measured.broker_us / 1e6
    return Plan(
        streams=streams,
        cores=cores,
        instances=instances,
        audio_partitions=max(instances.get(name, 1) for name in CONSUMERS),
        egress_partitions=instances.get("ingest", 1),
        redis_ops_per_second=frames * measured.redis_commands,
        kafka_mb_per_second={
            kind: streams * rate * AUDIO_TOPICS_WRITTEN / 1e6 for kind, rate in BYTES_PER_SECOND.items()
        },
    )


@dataclass(frozen=True, slots=True)
class ScaleCheck:
    """One ingest instance against two at the same load: the model says the CPU per frame is the same."""

    streams: int
    one_us: float
    two_us: float
    one_p99_ms: float
    two_p99_ms: float

    @property
    def ratio(self) -> float | None:
        return ratio(self.two_us, self.one_us)


def scale_check(results: Results) -> ScaleCheck:
    one, _ = pair(results, "acks_one_instance")
    two, _ = pair(results, "acks_two_instances")
    return ScaleCheck(
        streams=int(results["acks_one_instance"]["streams"]),
        one_us=float(one["cpu_us_per_frame"]),
        two_us=float(two["cpu_us_per_frame"]),
        one_p99_ms=float(one["p99_ms"]),
        two_p99_ms=float(two["p99_ms"]),
    )


def as_dict(results: Results) -> dict[str, Any]:
    measured = costs(results)
    check = scale_check(results)
    return {
        "utilisation": UTILISATION,
        "costs_us_per_frame": measured.services,
        "idle_ms_per_second": measured.idle_ms_per_second,
        "broker_us_per_frame": measured.broker_us,
        "redis_commands_per_frame": measured.redis_commands,
        "plans": [
            {
                "streams": p.streams,
                "cores": p.cores,
                "instances": p.instances,
                "audio_partitions": p.audio_partitions,
                "egress_partitions": p.egress_partitions,
                "redis_ops_per_second": p.redis_ops_per_second,
                "kafka_mb_per_second": p.kafka_mb_per_second,
            }
            for p in (plan(measured, n) for n in STREAMS)
        ],
        "scale_check": {
            "streams": check.streams,
            "one_instance_us_per_frame": check.one_us,
            "two_instances_us_per_frame": check.two_us,
            "ratio": check.ratio,
        },
    }


def markdown(results: Results, header: str) -> str:
    measured = costs(results)
    plans = [plan(measured, n) for n in STREAMS]
    check = scale_check(results)
    services = [name for name in SERVICES if name in measured.services]
    lines = [
        "# Capacity model",
        "",
        header,
        "",
        "What a deployment needs for many concurrent streams, computed from the CPU each service",
        "spent per 20 ms frame in this run (bench/capacity.py). A stream of 20 ms frames is 50 frames",
        "per second; every figure below is linear in frames.",
        "",
        "## Measured costs",
        "",
        f"From {measured.calls} concurrent Vonage echo calls over Kafka and Redis (all five services,",
        "recorded and echoed; see benchmarks.md, Telephony), CPU per echoed frame less each",
        "process's idle CPU:",
        "",
        "| service | CPU per frame | idle (per instance) |",
        "|---|---|---|",
        *(
            f"| {name} | {measured.services[name]:.0f} µs"
            f" | {measured.idle_ms_per_second.get(name, 0.0):.1f} ms/s |"
            for name in services
        ),
        f"| Kafka broker (one, replication 1) | {measured.broker_us:.0f} µs"
        f" | {1000 * (results['kafka_floor'].get('broker_idle_cores') or 0.0):.1f} ms/s |",
        "",
        f"Redis: {measured.redis_commands:.3f} commands per frame.",
        "",
        "## What N streams need",
        "",
        f"Instances are one process each (one event loop: at most one core), run at {UTILISATION:.0%}",
        "of their core. Audio partitions: at least one per instance of the largest consumer group",
        "(echo and the transcoder read `voxbus.audio.raw`, the writer `voxbus.audio.pcm`); egress",
        "partitions: at least one per ingest instance (each pod leases its own). Telephony reads",
        "`voxbus.events` (`EVENTS_PARTITIONS`).",
        "",
        "| | " + " | ".join(f"{p.streams:,} streams" for p in plans) + " |",
        "|---|" + "---|" * len(plans),
        *(
            f"| {name} | "
            + " | ".join(f"{_instances(p.instances[name])} ({p.cores[name]:,.1f} cores)" for p in plans)
            + " |"
            for name in services
        ),
        "| Kafka broker CPU | " + " | ".join(f"{p.cores['broker']:,.1f} cores" for p in plans) + " |",
        "| CPU in use (before headroom) | " + " | ".join(f"{p.total_cores:,.0f} cores" for p in plans) + " |",
        "| cores to provision (instances + broker) | "
        + " | ".join(f"{p.provisioned_cores:,.0f}" for p in plans)
        + " |",
        "| audio partitions (≥) | " + " | ".join(f"{p.audio_partitions:,}" for p in plans) + " |",
        "| egress partitions (≥) | " + " | ".join(f"{p.egress_partitions:,}" for p in plans) + " |",
        "| Redis commands/s | "
        + " | ".join(
            f"{p.redis_ops_per_second:,.0f} ({p.redis_ops_per_second / REDIS_OPS_PER_SECOND:.0%}"
            " of one Redis)"
            for p in plans
        )
        + " |",
        *(
            f"| Kafka in, {kind} (MB/s) | "
            + " | ".join(f"{p.kafka_mb_per_second[kind]:,.0f}" for p in plans)
            + " |"
            for kind in BYTES_PER_SECOND
        ),
        "",
        "8 kHz calls (Exotel, Twilio) send 50 frames per second too, of half the bytes. The model",
        "takes their CPU rows to be the same and their Kafka bytes half: an assumption (most of a",
        "frame's cost here is requests, wake-ups and records, which do not shrink with the bytes),",
        "not a measurement.",
        "",
        "## Checked here",
        "",
        f"{check.streams} session streams on one ingest instance cost {check.one_us:.0f} µs of CPU per frame",
        f"(ack p99 {check.one_p99_ms:.1f} ms); dealt out over two instances, {check.two_us:.0f} µs",
        f"(ack p99 {check.two_p99_ms:.1f} ms): {_ratio_text(check.ratio)} of the one instance's. The model",
        "assumes 1.0: adding instances adds capacity without adding cost per frame. Where the check",
        "reads more, the cause is what a lightly loaded instance pays: each of two instances carries",
        "half the frames in about as many Kafka requests (see the session acks: an ingest costs less",
        "per frame at 100 streams than at 40). Take the model's figures as what loaded instances cost.",
        "",
        "## Assumptions to check on your cluster",
        "",
        "- **Per-frame costs were measured on a 2-core machine** with the broker and the load generator",
        "  on the same cores. Cross-process wake-ups cost more there than on a server with cores to",
        "  spare, and batches grow with load, so per-frame costs at scale are likely lower: measure",
        "  one pod at your load (`process_cpu_seconds_total` on `/metrics`, or `make bench` on a node).",
        f"- **{UTILISATION:.0%} of a core per instance.** Above that, acks and echoes queue behind the event",
        "  loop (benchmarks.md: at 100 streams on one ingest process, ack p99 grows).",
        "- **The broker figure is one broker with replication factor 1.** With replication 3 every byte",
        "  is written three times and fetched twice more by followers: plan for roughly three times the",
        "  broker CPU and disk bandwidth across the cluster.",
        f"- **One Redis serves {REDIS_OPS_PER_SECOND:,} commands/s** (one thread, small commands, some",
        "  pipelined); measure yours with `redis-benchmark`. voxbus talks to one Redis endpoint (no",
        "  Cluster or Sentinel), so where the row above passes 100% of one Redis, that Redis is the",
        "  limit of one deployment: run several deployments (each its own Redis, Kafka topics prefix",
        "  and ingest address) and spread streams over them.",
        "- **Partitions are a floor**, not a target: more partitions than consumers let a group grow",
        "  without repartitioning (topics can gain partitions, and keys then move).",
        "",
    ]
    return "\n".join(lines)


def _instances(count: int) -> str:
    return f"{count:,} instance" + ("s" if count > 1 else "")


def _ratio_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"
