"""The transcoder service as the runtime sees it: a consumer group on the raw audio topic."""

from aiohttp import web

from voxbus.common.constants import Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.records import CODECS
from voxbus.common.runtime import BUS, SETTINGS, STORE, ServiceSpec, Work, consuming
from voxbus.transcoder import metrics
from voxbus.transcoder.worker import TranscodeHandler

GROUP = "transcoder"  # the consumer group: TOPIC_PREFIX + this
CONSUMER = "transcoder-consumer"  # the task, and its /ready check: ready means consuming


def consumer_loop(app: web.Application, work: Work) -> ConsumerLoop:
    settings = app[SETTINGS]
    handler = TranscodeHandler(
        app[BUS],
        app[STORE],
        pcm_topic=settings.topic(Topic.AUDIO_PCM),
        max_session_hours=settings.max_session_duration_hours,
    )
    return ConsumerLoop(
        app[BUS],
        [settings.topic(Topic.AUDIO_RAW)],
        group_id=settings.consumer_group(GROUP),
        batch_ms=settings.recording_batch_ms,
        handler=handler,
        lag=metrics.CONSUMER_LAG,
        on_progress=work.progressed,
    )


def setup(app: web.Application) -> None:
    metrics.declare(CODECS)
    app.cleanup_ctx.append(consuming(CONSUMER, consumer_loop))


SERVICE = ServiceSpec(
    name="transcoder",
    setup=setup,
    description="Any input codec on voxbus.audio.raw to PCM s16le on voxbus.audio.pcm.",
)
