"""The echo service as the runtime sees it: a consumer group on the raw audio topic and the one
task that sends each echo when it is due."""

from collections.abc import AsyncIterator

from aiohttp import web

from voxbus.common.constants import Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.runtime import BUS, SETTINGS, STORE, ServiceSpec, Work, background, consuming
from voxbus.echo import metrics
from voxbus.echo.worker import EchoHandler

GROUP = "echo"  # the consumer group: TOPIC_PREFIX + this
CONSUMER = "echo-consumer"  # the task, and its /ready check: ready means consuming
HANDLER = web.AppKey("echo_handler", EchoHandler)


COMMIT_INTERVAL_SECONDS = 0.25


def echo_loop(app: web.Application, work: Work) -> ConsumerLoop:
    settings = app[SETTINGS]
    return ConsumerLoop(
        app[BUS],
        [settings.topic(Topic.AUDIO_RAW)],
        group_id=settings.consumer_group(GROUP),
        handler=app[HANDLER],
        commit_when_idle=True,
        # an echo sent again after a restart is dropped by ingest (by its seq); a commit per batch
        # (dozens a second under load) is a broker request each: a fifth of this service's profile
        commit_interval=COMMIT_INTERVAL_SECONDS,
        lag=metrics.CONSUMER_LAG,
        on_progress=work.progressed,
    )


async def _send(app: web.Application, work: Work) -> None:
    await app[HANDLER].run_sender()


async def _handler(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[HANDLER] = EchoHandler(
        app[BUS],
        app[STORE],
        egress_topic=settings.topic(Topic.EGRESS),
        max_pending_bytes=settings.echo_max_pending_bytes,
        route_ttl=settings.echo_route_cache_ms / 1000,
        send_ahead=settings.echo_send_ahead_ms / 1000,
    )
    yield


def setup(app: web.Application) -> None:
    metrics.declare()
    app.cleanup_ctx.append(_handler)
    app.cleanup_ctx.append(background("echo-sender", _send))
    app.cleanup_ctx.append(consuming(CONSUMER, echo_loop))


SERVICE = ServiceSpec(
    name="echo",
    setup=setup,
    description="Audio from voxbus.audio.raw back to the client through voxbus.egress, on time.",
)
