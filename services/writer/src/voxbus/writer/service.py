"""The writer service as the runtime sees it: a consumer group on the PCM topic writing WAV files."""

from aiohttp import web

from voxbus.common.constants import Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.runtime import BUS, SETTINGS, STORE, ServiceSpec, Work, consuming
from voxbus.writer import metrics
from voxbus.writer.worker import WriteHandler, default_max_open

GROUP = "writer"  # the consumer group: TOPIC_PREFIX + this
CONSUMER = "writer-consumer"  # the task, and its /ready check: ready means consuming


def write_handler(app: web.Application) -> WriteHandler:
    settings = app[SETTINGS]
    return WriteHandler(
        app[BUS],
        app[STORE],
        storage=settings.audio_storage_path,
        segment_seconds=settings.segment_seconds,
        events_topic=settings.topic(Topic.EVENTS),
        pod=settings.pod_name,
        max_open=settings.writer_max_open_recordings or default_max_open(),
    )


def write_loop(app: web.Application, work: Work) -> ConsumerLoop:
    settings = app[SETTINGS]
    settings.audio_storage_path.mkdir(parents=True, exist_ok=True)
    handler = write_handler(app)
    return ConsumerLoop(
        app[BUS],
        [settings.topic(Topic.AUDIO_PCM)],
        group_id=settings.consumer_group(GROUP),
        batch_ms=settings.recording_batch_ms,
        handler=handler,
        lag=metrics.CONSUMER_LAG,
        on_progress=work.progressed,
        on_exit=handler.close,
    )


def setup(app: web.Application) -> None:
    metrics.declare()
    app.cleanup_ctx.append(consuming(CONSUMER, write_loop))


SERVICE = ServiceSpec(
    name="writer",
    setup=setup,
    description="PCM from voxbus.audio.pcm to the session WAV file and its fixed-length segments.",
)
