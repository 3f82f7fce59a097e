"""voxbus's Grafana dashboards, as data: `python -m voxbus.devinfra generate` writes them to
`deploy/grafana/dashboards/` (the JSON Grafana provisions), and a test holds those files to this
module and runs every query against a real Prometheus scraping a loaded cluster.

Queries name metrics, never jobs: a process is told apart by `instance`, and its service by
`voxbus_build_info{services}`, so the dashboards read the same whatever a deployment calls its
scrape jobs (compose, `voxbus stack`, the Prometheus Operator).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DIRECTORY = Path("deploy/grafana/dashboards")  # in the checkout
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # deploy/grafana/provisioning/datasources
COLUMNS = 2
PANEL_HEIGHT = 8
# a process's series with its service: `X * on (job, instance) group_left (services) voxbus_build_info`
WITH_SERVICE = "* on (job, instance) group_left (services) voxbus_build_info"
CONSUMER_LAG = '{__name__=~"voxbus_[a-z]+_consumer_lag_records"}'  # every consumer service's
CARRIERS = 'protocol=~"vonage|exotel|twilio"'


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # Grafana's unit id: s, Bps, short, percentunit, bytes
    queries: tuple[Query, ...]
    description: str = ""


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]

    @property
    def file_name(self) -> str:
        return f"{self.uid.removeprefix('voxbus-')}.json"


def quantiles(
    metric: str, by: str = "", qs: tuple[float, ...] = (0.5, 0.99), *, name: str = ""
) -> tuple[Query, ...]:
    """`histogram_quantile` of `metric`'s buckets over the last minute, per `by` labels; each
    legend is `name` (if any), the quantile (`p99`) and the `by` label's value."""
    labels = f"le, {by}" if by else "le"
    suffix = f" {{{{{by}}}}}" if by else ""
    prefix = f"{name} " if name else ""
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by ({labels}) (rate({metric}_bucket[1m])))",
            f"{prefix}p{q * 100:g}{suffix}",
        )
        for q in qs
    )


def rate(metric: str, by: str, legend: str) -> Query:
    """Per second over the last minute (12 scrapes at 5 s), summed `by` labels."""
    window = "1m"
    grouped = f"sum by ({by}) " if by else "sum "
    return Query(f"{grouped}(rate({metric}[{window}]))", legend)


def increase(metric: str, by: str, legend: str) -> Query:
    return Query(f"sum by ({by}) (increase({metric}[5m]))", legend)


OVERVIEW = Dashboard(
    uid="voxbus-overview",
    title="voxbus: overview",
    description="What clients do and what voxbus keeps: connections, sessions, audio in, refusals, "
    "recordings finished.",
    panels=(
        Panel(
            "Processes by service",
            "short",
            (Query("count by (services) (voxbus_build_info)", "{{services}}"),),
            "voxbus processes Prometheus scrapes, by the services each runs.",
        ),
        Panel(
            "Open connections by protocol",
            "short",
            (Query("sum by (protocol) (voxbus_ingest_connections)", "{{protocol}}"),),
        ),
        Panel(
            "Sessions started",
            "reqps",
            (rate("voxbus_ingest_sessions_total", "start", "{{start}}"),),
            "New sessions, and sessions resumed after a reconnect (a pod restart shows as resumes).",
        ),
        Panel(
            "Audio received by protocol",
            "Bps",
            (rate("voxbus_ingest_bytes_total", "protocol", "{{protocol}}"),),
        ),
        Panel(
            "Chunks in, transcoded, echoed",
            "short",
            (
                rate("voxbus_ingest_chunks_total", "", "received"),
                rate("voxbus_transcoder_chunks_total", "", "transcoded"),
                rate("voxbus_echo_frames_total", "", "echoed"),
            ),
            "Per second.",
        ),
        Panel(
            "Connections refused",
            "reqps",
            (rate("voxbus_ingest_refused_total", "protocol, reason", "{{protocol}} {{reason}}"),),
            "By protocol and reason: `auth`, or the close code (1008 a bad parameter or a limit, "
            "1013 at capacity, 1011 the bus or the state store away).",
        ),
        Panel(
            "Client messages rejected",
            "percentunit",
            (Query("voxbus:ingest_rejected_ratio:rate5m", "share of chunks"),),
            "Messages refused while the connection went on, as a share of chunks received.",
        ),
        Panel(
            "Recordings finished",
            "short",
            (increase("voxbus_writer_sessions_finalized_total", "status", "{{status}}"),),
            "Sessions whose files were completed in the last 5 minutes, by status.",
        ),
    ),
)

LATENCY = Dashboard(
    uid="voxbus-latency",
    title="voxbus: latency",
    description="The delays a client can measure: acknowledgement, socket to file, echo timing, "
    "carrier pacing.",
    panels=(
        Panel(
            "Ack latency",
            "s",
            quantiles("voxbus_ingest_ack_seconds"),
            "From a chunk's arrival to its acknowledgement, once durable on the bus (SLO: p99 < 100 ms).",
        ),
        Panel(
            "Socket to file",
            "s",
            quantiles("voxbus_writer_socket_to_file_seconds"),
            "From a chunk's arrival at an ingest socket to its audio being fsynced in the recording.",
        ),
        Panel(
            "Echo delay error",
            "s",
            quantiles("voxbus_echo_delay_error_seconds"),
            "When the echo service produced an echo minus when it planned to.",
        ),
        Panel(
            "Egress lateness",
            "s",
            quantiles("voxbus_ingest_egress_lateness_seconds"),
            "When an echo was handed to its socket (a carrier's: to its pacer, which takes it early) "
            "minus when it was to be.",
        ),
        Panel(
            "Carrier pacer lateness p99",
            "s",
            quantiles("voxbus_ingest_pacer_lateness_seconds", "protocol", (0.99,)),
            "How late a paced frame to a carrier was written after its time.",
        ),
        Panel(
            "Transcode batch and file flush p99",
            "s",
            (
                *quantiles("voxbus_transcoder_batch_seconds", qs=(0.99,), name="transcode batch"),
                *quantiles("voxbus_writer_flush_seconds", qs=(0.99,), name="writer flush"),
            ),
        ),
    ),
)

KAFKA = Dashboard(
    uid="voxbus-kafka",
    title="voxbus: Kafka",
    description="The bus: consumer lag by group and partition, produce errors, what flows through "
    "each stage, egress partitions.",
    panels=(
        Panel(
            "Consumer lag by group and partition",
            "short",
            (
                Query(
                    f"max by (group, topic, partition) ({CONSUMER_LAG})", "{{group}} {{topic}}/{{partition}}"
                ),
            ),
            "Records not consumed yet. Growing: add instances of that service, up to its topic's partitions.",
        ),
        Panel(
            "Largest lag per consumer group",
            "short",
            (Query("voxbus:consumer_lag_records:max", "{{group}}"),),
            "The alert VoxbusConsumerLagHigh fires above 1000 for 5 minutes.",
        ),
        Panel(
            "Produce errors",
            "reqps",
            (rate("voxbus_bus_produce_errors_total", "topic, stage", "{{topic}} {{stage}}"),),
            "Records Kafka refused (send) or did not acknowledge (delivery); their clients were told.",
        ),
        Panel(
            "Egress partitions leased by ingest instance",
            "short",
            (Query("voxbus_ingest_egress_leased_partitions", "{{instance}}"),),
            "0: this pod cannot route echo and prompts to its clients (more pods than EGRESS_PARTITIONS?).",
        ),
        Panel(
            "Bytes through the pipeline",
            "Bps",
            (
                rate("voxbus_ingest_bytes_total", "", "received"),
                rate("voxbus_transcoder_pcm_bytes_total", "", "PCM produced"),
                rate("voxbus_writer_pcm_bytes_total", "", "PCM written"),
            ),
        ),
        Panel(
            "Skipped, replayed and bad records",
            "short",
            (
                rate("voxbus_transcoder_skipped_chunks_total", "reason", "transcoder skipped: {{reason}}"),
                rate("voxbus_writer_replayed_chunks_total", "", "writer: replayed"),
                rate("voxbus_writer_gaps_total", "", "writer: gaps"),
                rate("voxbus_transcoder_bad_records_total", "", "transcoder: not voxbus records"),
            ),
            "Per second. Replays after a rebalance or a crash are expected; gaps are not.",
        ),
    ),
)

TELEPHONY = Dashboard(
    uid="voxbus-telephony",
    title="voxbus: telephony",
    description="Carrier webhooks, call statuses, media sockets and what is played to callers.",
    panels=(
        Panel(
            "Webhooks by carrier and outcome",
            "reqps",
            (rate("voxbus_telephony_webhooks_total", "provider, outcome", "{{provider}} {{outcome}}"),),
            "`unsigned` and `invalid` are refused: a misconfigured secret, or a caller that is not "
            "the carrier.",
        ),
        Panel(
            "Call statuses",
            "short",
            (increase("voxbus_telephony_calls_total", "carrier, status", "{{carrier}} {{status}}"),),
            "Statuses carriers reported in the last 5 minutes.",
        ),
        Panel(
            "Carrier media sockets",
            "short",
            (Query(f"sum by (protocol) (voxbus_ingest_connections{{{CARRIERS}}})", "{{protocol}}"),),
        ),
        Panel(
            "Frames paced to callers",
            "short",
            (rate("voxbus_ingest_paced_frames_total", "protocol", "{{protocol}}"),),
            "Per second: echo and prompts sent at the carrier's frame rate.",
        ),
        Panel(
            "Frames not sent to callers",
            "short",
            (
                rate(
                    "voxbus_ingest_pacer_dropped_frames_total",
                    "protocol, reason",
                    "{{protocol}} {{reason}}",
                ),
            ),
            "Per second: live audio during a prompt, cleared by barge-in, or over the queue bound.",
        ),
        Panel(
            "Prompts and call events",
            "short",
            (
                increase("voxbus_telephony_prompts_total", "outcome", "prompts: {{outcome}}"),
                increase("voxbus_telephony_call_events_total", "kind", "events: {{kind}}"),
            ),
            "In the last 5 minutes.",
        ),
    ),
)

SATURATION = Dashboard(
    uid="voxbus-saturation",
    title="voxbus: saturation per instance",
    description="How full each process is: CPU, memory, file handles, event loop lag, and the work it holds.",
    panels=(
        Panel(
            "CPU by instance",
            "percentunit",
            (Query(f"rate(process_cpu_seconds_total[1m]) {WITH_SERVICE}", "{{services}} {{instance}}"),),
            "Cores used (1 = one core). A Python process tops out near one core: add instances first.",
        ),
        Panel(
            "Resident memory",
            "bytes",
            (Query(f"process_resident_memory_bytes {WITH_SERVICE}", "{{services}} {{instance}}"),),
        ),
        Panel(
            "Event loop lag p99",
            "s",
            quantiles("voxbus_runtime_event_loop_lag_seconds", "instance", (0.99,)),
            "How late a 0.25 s timer fires: above a few ms, the process is short of CPU.",
        ),
        Panel(
            "File descriptors used",
            "percentunit",
            (Query(f"(process_open_fds / process_max_fds) {WITH_SERVICE}", "{{services}} {{instance}}"),),
        ),
        Panel(
            "Connections per ingest instance",
            "short",
            (Query("sum by (instance) (voxbus_ingest_connections)", "{{instance}}"),),
        ),
        Panel(
            "Open sessions per consumer instance",
            "short",
            (
                Query("sum by (instance) (voxbus_transcoder_open_sessions)", "transcoder {{instance}}"),
                Query("sum by (instance) (voxbus_writer_open_sessions)", "writer {{instance}}"),
                Query("sum by (instance) (voxbus_echo_pending_frames)", "echo pending frames {{instance}}"),
            ),
        ),
    ),
)

DASHBOARDS = (OVERVIEW, LATENCY, KAFKA, TELEPHONY, SATURATION)


def grafana_json(dashboard: Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (schema 39: Grafana 10 and 11)."""
    width = 24 // COLUMNS
    panels = []
    for index, panel in enumerate(dashboard.panels):
        panels.append(
            {
                "id": index + 1,
                "type": "timeseries",
                "title": panel.title,
                "description": panel.description,
                "datasource": DATASOURCE,
                "gridPos": {
                    "h": PANEL_HEIGHT,
                    "w": width,
                    "x": (index % COLUMNS) * width,
                    "y": (index // COLUMNS) * PANEL_HEIGHT,
                },
                "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
                "options": {
                    "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                    "tooltip": {"mode": "multi", "sort": "desc"},
                },
                "targets": [
                    {
                        "refId": chr(ord("A") + n),
                        "datasource": DATASOURCE,
                        "expr": q.expr,
                        "legendFormat": q.legend,
                    }
                    for n, q in enumerate(panel.queries)
                ],
            }
        )
    return {
        "uid": dashboard.uid,
        "title": dashboard.title,
        "description": dashboard.description,
        "tags": ["voxbus"],
        "timezone": "browser",
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "annotations": {"list": []},
        "templating": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["voxbus"],
                "asDropdown": True,
                "title": "voxbus",
                "includeVars": False,
            }
        ],
        "panels": panels,
    }


def render(dashboard: Dashboard) -> str:
    return json.dumps(grafana_json(dashboard), indent=2) + "\n"


def write(directory: Path) -> list[Path]:
    """Write every dashboard's JSON into `directory`; the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in DASHBOARDS:
        path = directory / dashboard.file_name
        path.write_text(render(dashboard))
        written.append(path)
    return written
