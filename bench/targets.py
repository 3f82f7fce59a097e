"""The performance targets on this machine, judged from one suite run.

Each target is a figure from a voxbus run held to a limit, most of them as a ratio to a baseline
measured in the same run; docs/benchmarks.md shows them first. A smoke run computes the same
figures at loads too small to mean anything and judges none.
"""

from dataclasses import dataclass
from typing import Any

from bench.figures import (
    Results,
    broker_us_per_frame,
    faults,
    pair,
    ratio,
    runs,
    server_us_per_frame,
)

MEMORY_SERVERS = ("voxbus embedded", "voxbus ingest over Kafka")


@dataclass(frozen=True, slots=True)
class Target:
    goal: str  # what is promised, in words
    measured: float | None
    limit: float
    unit: str  # "ms", "x" (a ratio to the baseline), "frames"
    baseline: str  # the same-run baseline's figure, in words ("" where there is none)

    @property
    def met(self) -> bool | None:
        return None if self.measured is None else self.measured <= self.limit

    def as_dict(self) -> dict[str, Any]:
        return {
            "goal": self.goal,
            "measured": self.measured,
            "limit": self.limit,
            "unit": self.unit,
            "baseline": self.baseline,
            "met": self.met,
        }


def _us(value: float | None) -> str:
    return "- (no broker measured)" if value is None else f"{value:.0f} µs"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _streams(results: Results, scenario: str) -> str:
    return f"{results[scenario]['streams']} streams"


def _echo_p99(results: Results, scenario: str, delay_ms: int, limit: float) -> Target:
    ours, bare = pair(results, scenario, delay_ms)
    goal = (
        f"Delay-0 echo over Kafka, {_streams(results, scenario)}: p99"
        if delay_ms == 0
        else f"Delayed echo ({delay_ms / 1000:g} s) over Kafka, {_streams(results, scenario)}: |error| p99"
    )
    return Target(goal, ours["p99_ms"], limit, "ms", f"bare aiohttp echo p99 {_ms(bare['p99_ms'])}")


def _whole_system_cpu(results: Results) -> Target:
    ours, bare = pair(results, "echo_50", 0)
    broker = broker_us_per_frame(ours)
    whole = None if broker is None else server_us_per_frame(ours) + broker  # no broker measured: no figure
    return Target(
        f"CPU per echoed frame, ingest + echo + broker, delay 0, {_streams(results, 'echo_50')}",
        ratio(whole, server_us_per_frame(bare)),
        3.0,
        "x",
        f"bare aiohttp echo {server_us_per_frame(bare):.0f} µs; voxbus {_us(whole)}",
    )


def _embedded(results: Results) -> list[Target]:
    ours, bare = pair(results, "echo_embedded_100", 0)
    return [
        Target(
            f"Embedded on one core, {_streams(results, 'echo_embedded_100')}, delay 0: CPU per echoed frame",
            ratio(server_us_per_frame(ours), server_us_per_frame(bare)),
            1.5,
            "x",
            f"bare aiohttp echo {server_us_per_frame(bare):.0f} µs;"
            f" voxbus {server_us_per_frame(ours):.0f} µs",
        ),
        Target(
            f"Embedded on one core, {_streams(results, 'echo_embedded_100')}, delay 0: p99",
            ratio(ours["p99_ms"], bare["p99_ms"]),
            3.0,
            "x",
            f"bare aiohttp echo p99 {_ms(bare['p99_ms'])}; voxbus {_ms(ours['p99_ms'])}",
        ),
    ]


def _memory(results: Results) -> list[Target]:
    idle = results["memory"]["idle_connection_bytes"]
    bare = idle["bare aiohttp"]
    return [
        Target(
            f"Memory per idle connection, {server}",
            ratio(idle[server], bare),
            1.5,
            "x",
            f"bare aiohttp {bare / 1024:.1f} KiB; voxbus {idle[server] / 1024:.1f} KiB",
        )
        for server in MEMORY_SERVERS
    ]


def _no_faults(results: Results) -> Target:
    scenarios = [name for name in results if name.startswith(("echo_", "telephony_"))]
    total = sum(faults(run) for name in scenarios for run in runs(results, name, baseline=False))
    return Target(
        "Frames lost, duplicated, reordered or not as sent, every echo and telephony run",
        float(total),
        0.0,
        "frames",
        "",
    )


def judge(results: Results) -> list[Target]:
    acks, sink = pair(results, "acks_100")
    return [
        _echo_p99(results, "echo_20", 0, 20.0),
        _echo_p99(results, "echo_50", 0, 30.0),
        _echo_p99(results, "echo_50", 1000, 5.0),
        _echo_p99(results, "echo_100", 1000, 10.0),
        _whole_system_cpu(results),
        Target(
            f"Session acks over Kafka, {_streams(results, 'acks_100')}: p99",
            acks["p99_ms"],
            25.0,
            "ms",
            f"bare aiohttp sink p99 {_ms(sink['p99_ms'])}",
        ),
        *_embedded(results),
        *_memory(results),
        _no_faults(results),
    ]
