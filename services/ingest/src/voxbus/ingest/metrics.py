"""Prometheus metrics of ingest (names `voxbus_ingest_*`)."""

from prometheus_client import Counter, Gauge, Histogram

SOCKETS = Gauge("voxbus_ingest_connections", "Open WebSocket connections", ["protocol"])
CHUNKS = Counter("voxbus_ingest_chunks_total", "Audio chunks received", ["protocol"])
BYTES = Counter("voxbus_ingest_bytes_total", "Audio bytes received", ["protocol"])
EGRESS_BYTES = Counter("voxbus_ingest_egress_bytes_total", "Egress audio bytes sent to clients", ["protocol"])
REJECTED = Counter(
    "voxbus_ingest_rejected_messages_total",
    "Client messages refused while the connection went on (or, where the framing was lost, ended)",
    ["protocol", "reason"],
)
REFUSED = Counter("voxbus_ingest_refused_total", "Connections refused", ["protocol", "reason"])
EGRESS_LEASED = Gauge(
    "voxbus_ingest_egress_partitions_leased",
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
    "When egress audio with a due time (an echo) was written to its socket, minus that due time",
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
