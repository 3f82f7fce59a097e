"""The suite's report: docs/benchmarks.md, docs/benchmarks.json, docs/images/bench-*.png and
docs/capacity.md, all from one run's results (bench/suite.py), with the hand-written findings of
bench/findings.md (what the profiles showed) carried in verbatim."""

import datetime
import json
import os
import platform
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt

from bench import capacity
from bench.figures import (
    Results,
    broker_us_per_frame,
    by_process,
    faults,
    pair,
    ratio,
    runs,
    server_us_per_frame,
)
from bench.targets import Target, judge
from voxbus.devinfra.kafka_fetch import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[1]
FINDINGS = Path(__file__).with_name("findings.md")
ECHO_RUNS = (  # scenario, delay, how it ran
    ("echo_20", 0, "over Kafka"),
    ("echo_50", 0, "over Kafka"),
    ("echo_50", 1000, "over Kafka"),
    ("echo_100", 1000, "over Kafka"),
    ("echo_embedded_100", 0, "embedded, 1 core"),
    ("echo_embedded_100", 1000, "embedded, 1 core"),
)
ACK_RUNS = (
    ("acks_100", "over Kafka"),
    ("acks_embedded_100", "embedded"),
    ("acks_one_instance", "over Kafka, 1 ingest"),
    ("acks_two_instances", "over Kafka, 2 ingests"),
)


def _echo_label(results: Results, scenario: str, delay_ms: int, how: str) -> str:
    delay = "delay 0" if delay_ms == 0 else f"delay {delay_ms / 1000:g} s"
    return f"{how}, {delay}, {results[scenario]['streams']} streams"


def _machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT, check=False
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit or "unknown",
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(memory_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
    }


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} µs"


def _broker(run: dict[str, Any]) -> str:
    broker = broker_us_per_frame(run)
    return "" if broker is None else f"; broker {broker:.0f}"


def _cell(text: str) -> str:
    """Text in a Markdown table cell: its pipes escaped."""
    return text.replace("|", "\\|")


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _verdict(target: Target, smoke: bool) -> str:
    if smoke or target.met is None:
        return "not judged"
    return "**met**" if target.met else "missed"


def _measured(target: Target) -> str:
    if target.measured is None:
        return "-"
    if target.unit == "frames":
        return f"{target.measured:.0f}"
    return f"{target.measured:.2f}x" if target.unit == "x" else f"{target.measured:.1f} ms"


def _limit(target: Target) -> str:
    return f"≤ {target.limit:g}x" if target.unit == "x" else f"≤ {target.limit:g} {target.unit}"


def _targets_table(targets: list[Target], smoke: bool) -> list[str]:
    return [
        "| target | measured | limit | same-run baseline | |",
        "|---|---|---|---|---|",
        *(
            f"| {_cell(t.goal)} | {_measured(t)} | {_limit(t)} | {t.baseline or '-'} | {_verdict(t, smoke)} |"
            for t in targets
        ),
    ]


def _floor(results: Results) -> list[str]:
    floor = results["kafka_floor"]
    hops = [
        ("plain aiokafka, linger 0 (acks=all, idempotent)", floor["aiokafka_linger0"]),
        ("plain aiokafka, linger 2 ms", floor["aiokafka_linger2"]),
        ("voxbus's producer (KafkaBus) and partition tail", floor["voxbus_bus"]),
        ("Kafka's EndToEndLatency tool", floor["end_to_end_latency"]),
    ]
    tool = floor["producer_performance"]
    return [
        "One record every 20 ms, produced and read back with nothing else running: the floor under",
        "anything that crosses the bus (an echo crosses it twice).",
        "",
        "| one hop through Kafka | p50 ms | p99 ms |",
        "|---|---|---|",
        *(f"| {name} | {_ms(hop.get('p50_ms'))} | {_ms(hop.get('p99_ms'))} |" for name, hop in hops),
        "",
        f"Kafka's ProducerPerformance tool, {tool['record_bytes']}-byte records as fast as one producer",
        f"sends them (acks=all): {tool['records_per_s']:,.0f} records/s ({tool['mb_per_s']:.1f} MiB/s),"
        f" latency p50 {_ms(tool.get('p50_ms'))} / p99 {_ms(tool.get('p99_ms'))} ms, broker CPU"
        f" {_ms(tool.get('broker_us_per_record'))} µs per record.",
    ]


def _acks(results: Results) -> list[str]:
    rows = []
    for scenario, how in ACK_RUNS:
        ours, sink = pair(results, scenario)
        label = f"{how}, {results[scenario]['streams']} streams"
        redis = ours.get("redis_commands_per_frame")
        rows.append(
            f"| {label} | {_ms(ours['p50_ms'])} / {_ms(ours['p99_ms'])} | {_ms(sink['p50_ms'])} /"
            f" {_ms(sink['p99_ms'])} | {server_us_per_frame(ours):.0f} µs"
            f" ({_x(ratio(server_us_per_frame(ours), server_us_per_frame(sink)))})"
            f" | {_us(broker_us_per_frame(ours))} | {'-' if redis is None else f'{redis:.2f}'} |"
            f" {_share(ours)} |"
        )
    return [
        "Streams of 20 ms frames into `/api/ws/audio` (a recording session); each frame is acked.",
        "Baseline: a bare aiohttp WebSocket that acks each frame at once. Embedded is `voxbus up`,",
        "which also transcodes and writes the recording in the same process.",
        "",
        "| run | ack p50 / p99 ms | bare sink p50 / p99 ms | server CPU per frame (vs bare)"
        " | broker per frame | Redis commands per frame | machine (server, broker, load generator) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _echo(results: Results) -> list[str]:
    rows = []
    for scenario, delay, how in ECHO_RUNS:
        ours, bare = pair(results, scenario, delay)
        label = _echo_label(results, scenario, delay, how)
        processes = ", ".join(f"{name} {us:.0f}" for name, us in by_process(ours).items())
        rows.append(
            f"| {label} | {_ms(ours['p50_ms'])} / {_ms(ours['p99_ms'])} / {_ms(ours['max_ms'])} |"
            f" {_ms(bare['p50_ms'])} / {_ms(bare['p99_ms'])} | {ours['received']:,} of {ours['sent']:,}"
            f" | {faults(ours)} | {processes}{_broker(ours)}"
            f" | {server_us_per_frame(bare):.0f} | {_share(ours)} |"
        )
    return [
        "Streams of numbered 20 ms frames into `/ws/audio?delay_ms=D`; each echo is matched to its",
        "frame: |error| = |received - sent - D|. Over Kafka: `voxbus serve ingest` + `voxbus serve echo`;",
        "embedded: `voxbus up` (which also records) and the bare echo both pinned to one core, the load",
        "generator on the other. Baseline: a bare aiohttp echo.",
        "",
        "| run | voxbus p50 / p99 / max ms | bare p50 / p99 ms | echoed | lost, dup, reordered, wrong |"
        " voxbus CPU µs per frame | bare µs | machine (servers, broker, load generator) |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def _telephony(results: Results) -> list[str]:
    rows = []
    for scenario, label in (
        ("telephony_embedded", "embedded"),
        ("telephony_distributed", "over Kafka+Redis"),
    ):
        document = results[scenario]
        for ours in runs(results, scenario, baseline=False):
            bare = next(
                run for run in runs(results, scenario, baseline=True) if run["calls"] == ours["calls"]
            )
            rows.append(
                f"| {label}, {ours['calls']} calls | {_ms(ours['jitter_p50'])} / {_ms(ours['jitter_p99'])} |"
                f" {_ms(bare['jitter_p50'])} / {_ms(bare['jitter_p99'])} |"
                f" {_ms(ours['delay_error_p50'])} / {_ms(ours['delay_error_p99'])} | {faults(ours)} |"
                f" {server_us_per_frame(ours):.0f}"
                f" ({_x(ratio(server_us_per_frame(ours), server_us_per_frame(bare)))})"
                f" | {_share(ours)} |"
            )
        delay = document["delay_ms"]
    return [
        f"Concurrent 16 kHz Vonage calls in echo mode (ECHO_DELAY_MS {delay}), each frame numbered;",
        "jitter is |interval between frames a caller receives - 20 ms|. Baseline: a bare aiohttp",
        "server answering the same webhook and pacing each socket's frames back on a 20 ms clock.",
        "",
        "| run | jitter p50 / p99 ms | bare p50 / p99 ms | delay error p50 / p99 ms | faults |"
        " CPU µs per frame (vs bare) | machine (servers, broker, load generator) |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


def _recording(results: Results) -> list[str]:
    document = results["recording"]
    base = document["baseline"]
    writer = document["writer_mb_per_cpu_second"]
    return [
        "Transcode + write in one process over the in-process bus (one core, no broker), chunks as",
        "clients send them. Baseline: appending the same PCM to a file, fsyncing every 500 chunks.",
        "",
        "| case | session | CPU s | x real time | vs baseline |",
        "|---|---|---|---|---|",
        f"| baseline: append bytes to a file | {document['seconds'] / 60:.3g} min"
        f" | {base['cpu_seconds']:.4f} |"
        f" {base['realtime_factor']:,.0f} | 1.00x |",
        *(
            f"| {case['case']} | {case['session_seconds'] / 60:.3g} min | {case['cpu_seconds']:.3f} |"
            f" {case['realtime_factor']:,.0f} | {case['vs_baseline']:.1f}x |"
            for case in document["cases"]
        ),
        "",
        "Writer throughput over a whole session (flat means appends cost the same at any length): "
        + ", ".join(f"{length} {value:.1f} MB per CPU-second" for length, value in writer.items())
        + ".",
    ]


def _memory(results: Results) -> list[str]:
    document = results["memory"]
    bare = document["idle_connection_bytes"]["bare aiohttp"]
    names = list(document["idle_connection_bytes"])
    sessions = document.get("idle_session_bytes", {})
    active = document.get("active_stream_bytes", {})

    def kib(value: float | None) -> str:
        return "-" if value is None else f"{value / 1024:.1f} KiB"

    return [
        f"Resident memory of the server process, per connection: {document['connections']} idle",
        f"WebSockets on `/ws/audio`, then on `/api/ws/audio` (a recording session), then"
        f" {document['streams']} active echo streams.",
        "",
        "| server | idle connection (vs bare) | idle session | active stream |",
        "|---|---|---|---|",
        *(
            f"| {name} | {kib(document['idle_connection_bytes'][name])}"
            f" ({_x(ratio(document['idle_connection_bytes'][name], bare))}) | {kib(sessions.get(name))} |"
            f" {kib(active.get(name))} |"
            for name in names
        ),
    ]


def _share(run: dict[str, Any]) -> str:
    share = run["share"]
    broker = share.get("broker")
    return (
        f"{share['machine']:.2f} of {os.cpu_count()} ({share['server']:.2f},"
        f" {'-' if broker is None else f'{broker:.2f}'}, {share['load_generator']:.2f})"
    )


def _plots(results: Results, images: Path) -> Iterator[Path]:
    images.mkdir(parents=True, exist_ok=True)
    labels = [_echo_label(results, scenario, delay, how) for scenario, delay, how in ECHO_RUNS]
    pairs = [pair(results, scenario, delay) for scenario, delay, _ in ECHO_RUNS]
    positions = range(len(labels))

    figure, axis = plt.subplots(figsize=(10, 4.5))
    axis.bar(
        [p - 0.2 for p in positions], [ours["p99_ms"] or 0 for ours, _ in pairs], 0.4, label="voxbus p99"
    )
    axis.bar(
        [p + 0.2 for p in positions],
        [bare["p99_ms"] or 0 for _, bare in pairs],
        0.4,
        label="bare aiohttp p99",
    )
    axis.set_yscale("log")
    axis.set_ylabel("|error| p99, ms (log)")
    axis.set_xticks(list(positions), labels, rotation=20, ha="right", fontsize=8)
    axis.set_title("Echo |error| p99: voxbus next to a bare aiohttp echo, same run")
    axis.legend()
    figure.tight_layout()
    path = images / "bench-echo-latency.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    yield path

    figure, axis = plt.subplots(figsize=(10, 4.5))
    processes = sorted({name for ours, _ in pairs for name in by_process(ours)})
    bottoms = [0.0] * len(pairs)
    for name in [*processes, "broker"]:
        heights = [
            (broker_us_per_frame(ours) or 0.0) if name == "broker" else by_process(ours).get(name, 0.0)
            for ours, _ in pairs
        ]
        axis.bar([p - 0.2 for p in positions], heights, 0.4, bottom=bottoms, label=f"voxbus: {name}")
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    axis.bar(
        [p + 0.2 for p in positions],
        [server_us_per_frame(bare) for _, bare in pairs],
        0.4,
        label="bare aiohttp echo",
    )
    axis.set_ylabel("CPU µs per echoed frame")
    axis.set_xticks(list(positions), labels, rotation=20, ha="right", fontsize=8)
    axis.set_title("Where an echoed frame's CPU goes, next to the bare echo's")
    axis.legend(fontsize=8)
    figure.tight_layout()
    path = images / "bench-echo-cpu.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    yield path


def write_report(
    results: Results, *, out: Path, smoke: bool, machine: dict[str, Any] | None = None
) -> Iterator[Path]:
    """Write the report's files under `out` (images in `out`/images); yield each path written.
    `machine`: where and when the results were measured (default: here and now)."""
    machine = machine or _machine()
    targets = judge(results)
    kind = "a smoke run: tiny loads, no target judged" if smoke else "a full run"
    header = (
        f"Generated by `make bench` ({kind}) on {machine['date']} at commit {machine['commit']}:"
        f" {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB,"
        f" Linux {machine['kernel']}, Python {machine['python']}, Kafka {machine['kafka']} (one local"
        " broker), the Kafka broker and the load generator on the same cores as the servers."
    )
    images = out / "images"
    pictures = list(_plots(results, images))
    findings = FINDINGS.read_text().strip().splitlines() if FINDINGS.exists() else []
    sections = [
        ("The bus's limit", _floor(results)),
        ("Session acks", _acks(results)),
        ("Echo", _echo(results)),
        ("Telephony echo calls", _telephony(results)),
        ("Recording path", _recording(results)),
        ("Memory", _memory(results)),
    ]
    lines = [
        "# Benchmarks",
        "",
        header,
        "",
        "Every voxbus figure stands next to a baseline measured in the same run; ratios are voxbus over",
        "the baseline. `make bench` regenerates this page, `benchmarks.json` (every figure), the",
        "pictures and [capacity.md](capacity.md) (what 1k-100k streams need). The scripts and how to run",
        "one scenario alone are in `bench/`.",
        "",
        "## Targets",
        "",
        *_targets_table(targets, smoke),
        "",
        *(f"![{path.stem}](images/{path.name})" for path in pictures),
        "",
    ]
    for title, body in sections:
        lines += [f"## {title}", "", *body, ""]
    if findings:
        lines += [*findings, ""]
    report = out / "benchmarks.md"
    report.write_text("\n".join(lines))
    yield report
    document = {
        "machine": machine,
        "smoke": smoke,
        "targets": [t.as_dict() for t in targets],
        "capacity": capacity.as_dict(results),
        "scenarios": {name: {k: v for k, v in doc.items() if k != "output"} for name, doc in results.items()},
    }
    data = out / "benchmarks.json"
    data.write_text(json.dumps(document, indent=2) + "\n")
    yield data
    page = out / "capacity.md"
    page.write_text(capacity.markdown(results, header))
    yield page
    yield from pictures
