"""Prometheus metrics of ingest (names `voxbus_ingest_*`)."""

from collections.abc import Iterable, Mapping

from prometheus_client import Counter, Gauge, Histogram

SOCKETS = Gauge("voxbus_ingest_connections", "Open WebSocket connections", ["protocol"])
SESSIONS = Counter(
    "voxbus_ingest_sessions_total",
    "Sessions started on this pod, by protocol and start (new, resumed)",
    ["protocol", "start"],
)
CHUNKS = Counter("voxbus_ingest_chunks_total", "Audio chunks received", ["protocol"])
BYTES = Counter("voxbus_ingest_bytes_total", "Audio bytes received", ["protocol"])
# per tenant (docs/security.md): "-" is the operator's; tenants are few, made by an admin
TENANT_SESSIONS = Counter("voxbus_ingest_tenant_sessions_total", "Sessions started, by tenant", ["tenant"])
TENANT_BYTES = Counter("voxbus_ingest_tenant_bytes_total", "Audio bytes received, by tenant", ["tenant"])
EGRESS_BYTES = Counter("voxbus_ingest_egress_bytes_total", "Egress audio bytes sent to clients", ["protocol"])
EGRESS_DROPPED = Counter(
    "voxbus_ingest_egress_dropped_bytes_total",
    "Egress audio bytes not sent: the client was not reading (what was sent to it before was still unsent)",
    ["protocol"],
)
REJECTED = Counter(
    "voxbus_ingest_rejected_messages_total",
    "Client messages refused while the connection went on (or, where the framing was lost, ended)",
    ["protocol", "reason"],
)
REFUSED = Counter("voxbus_ingest_refused_total", "Connections refused", ["protocol", "reason"])
# `auth`, or the close code a refusal sends: 1002 (Wyoming framing lost), 1008 (a parameter, a
# limit, an unknown session), 1011 (the bus or the state store away), 1013 (at capacity)
REFUSAL_REASONS = ("auth", "1002", "1008", "1011", "1013")
EGRESS_LEASED = Gauge(
    "voxbus_ingest_egress_leased_partitions",
    "Egress partitions this pod holds the lease of: 1 when it can route echo and prompts to its "
    "clients, else 0 (set when it claims or gives up one, and at every readiness check)",
)
ACK_SECONDS = Histogram(
    "voxbus_ingest_ack_seconds",
    "From a chunk's arrival to its acknowledgement (durable on the bus)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1),
)
EGRESS_LATENESS = Histogram(
    "voxbus_ingest_egress_lateness_seconds",
    "When egress audio with a due time (an echo) was handed to its socket (a carrier's: to its pacer), "
    "minus when it was to be: its due time, less the socket's lead, at most ECHO_SEND_AHEAD_MS",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5),
)
PACED_FRAMES = Counter(
    "voxbus_ingest_paced_frames_total", "Frames a carrier's media socket was sent by its pacer", ["protocol"]
)
PACER_DROPPED = Counter(
    "voxbus_ingest_pacer_dropped_frames_total",
    "Outbound frames not sent: live audio during a prompt, cleared (barge-in), or over the queue bound",
    ["protocol", "reason"],
)
PACER_LATENESS = Histogram(
    "voxbus_ingest_pacer_lateness_seconds",
    "How late a paced frame was written after its scheduled time",
    ["protocol"],
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1),
)


def declare(protocols: Mapping[str, Iterable[str]]) -> None:
    """Every protocol's series (with its rejection reasons) at 0 from the start, so a dashboard
    shows none rather than no data, and `rate()` sees a series' first event."""
    for protocol, rejections in protocols.items():
        for reason in rejections:
            REJECTED.labels(protocol, reason)
        SOCKETS.labels(protocol)
        for start in ("new", "resumed"):
            SESSIONS.labels(protocol, start)
        for family in (CHUNKS, BYTES, EGRESS_BYTES, EGRESS_DROPPED):
            family.labels(protocol)
        for reason in REFUSAL_REASONS:
            REFUSED.labels(protocol, reason)
