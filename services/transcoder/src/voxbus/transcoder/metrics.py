"""Prometheus metrics of the transcoder (names `voxbus_transcoder_*`)."""

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from voxbus.common.consumer import ConsumerLag

CHUNKS = Counter("voxbus_transcoder_chunks_total", "Audio chunks transcoded", ["codec"])
SKIPPED_CHUNKS = Counter(
    "voxbus_transcoder_skipped_chunks_total",
    "Client chunks not taken: sent again after a resume (duplicate), or behind one the bus refused (gap)",
    ["reason"],
)
BYTES_OUT = Counter("voxbus_transcoder_pcm_bytes_total", "PCM bytes produced")
ERRORS = Counter("voxbus_transcoder_session_errors_total", "Sessions failed on undecodable input", ["codec"])
BAD_RECORDS = Counter(
    "voxbus_transcoder_bad_records_total", "Records on the raw topic that are not voxbus records"
)
SESSIONS = Gauge("voxbus_transcoder_open_sessions", "Sessions with decoder state in this process")
BATCH_SECONDS = Histogram(
    "voxbus_transcoder_batch_seconds",
    "Time to transcode a batch and make its output durable",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
CONSUMER_LAG = ConsumerLag(
    "voxbus_transcoder_consumer_lag_records",
    "Records on voxbus.audio.raw not consumed yet by this process: high watermark - position, per partition",
)


def declare(codecs: Iterable[str]) -> None:
    """Every codec's and skip reason's series at 0 from the start, so a dashboard shows none
    rather than no data."""
    for codec in codecs:
        CHUNKS.labels(codec)
        ERRORS.labels(codec)
    for reason in ("duplicate", "gap"):
        SKIPPED_CHUNKS.labels(reason)
