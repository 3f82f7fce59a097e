"""Prometheus metrics of the writer (names `voxbus_writer_*`)."""

from prometheus_client import Counter, Gauge, Histogram

from voxbus.common.consumer import ConsumerLag

BYTES = Counter("voxbus_writer_pcm_bytes_total", "PCM bytes written to session files")
DUPLICATES = Counter("voxbus_writer_replayed_chunks_total", "Replayed chunks skipped (already written)")
FINALIZED = Counter(
    "voxbus_writer_sessions_finalized_total", "Sessions whose files were completed", ["status"]
)
GAPS = Counter("voxbus_writer_gaps_total", "PCM chunks that started past the end of the file")
WRITE_ERRORS = Counter(
    "voxbus_writer_write_errors_total",
    "Recordings that could not be written (a full disk, a file-size limit, an I/O error): each ends `error`",
)
BAD_CHUNKS = Counter("voxbus_writer_bad_chunks_total", "PCM chunks without a position, skipped")
OPEN = Gauge("voxbus_writer_open_sessions", "Session files open in this process")
EVICTED = Counter(
    "voxbus_writer_least_recent_closed_total",
    "Recordings closed to stay within WRITER_MAX_OPEN_RECORDINGS (resumed if more audio comes)",
)
SOCKET_TO_FILE_SECONDS = Histogram(
    "voxbus_writer_socket_to_file_seconds",
    "From a chunk's arrival at an ingest socket to its audio being flushed and fsynced in the session's "
    "file (the ingest pod's clock against the writer's)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
FLUSH_SECONDS = Histogram(
    "voxbus_writer_flush_seconds",
    "Time to flush and fsync a batch's files",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
CONSUMER_LAG = ConsumerLag(
    "voxbus_writer_consumer_lag_records",
    "Records on voxbus.audio.pcm not consumed yet by this process: high watermark - position, per partition",
)


def declare() -> None:
    """Every final status at 0 from the start, so a dashboard shows none rather than no data."""
    for status in ("completed", "error"):
        FINALIZED.labels(status)
