"""Prometheus metrics of the echo service (names `voxbus_echo_*`)."""

from prometheus_client import Counter, Gauge, Histogram

from voxbus.common.consumer import ConsumerLag

FRAMES = Counter("voxbus_echo_frames_total", "Audio chunks sent back through voxbus.egress")
DELAY_ERROR = Histogram(
    "voxbus_echo_delay_error_seconds",
    "When an echo was produced minus when it was planned: ECHO_SEND_AHEAD_MS before it is due, "
    "or when its chunk was consumed if that is later",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1, 5),
)
PENDING = Gauge("voxbus_echo_pending_frames", "Chunks waiting for their echo time")
DROPPED = Counter(
    "voxbus_echo_dropped_frames_total",
    "Chunks not echoed: overflow (pending cap), gone (session ended), no_route (no socket), failed",
    ["reason"],
)
CONSUMER_LAG = ConsumerLag(
    "voxbus_echo_consumer_lag_records",
    "Records on voxbus.audio.raw not consumed yet by this process: high watermark - position, per partition",
)


def declare() -> None:
    """Every drop reason at 0 from the start, so a dashboard shows none rather than no data."""
    for reason in ("overflow", "gone", "no_route", "failed"):
        DROPPED.labels(reason)
