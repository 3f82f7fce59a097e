"""The telephony service as the runtime sees it: carrier webhooks, call records, and a consumer
group on `voxbus.events` that links calls to their sessions and plays greetings."""

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from voxbus.common.call_state import CallRecords
from voxbus.common.constants import Topic
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.runtime import BUS, SETTINGS, STORE, ServiceSpec, Work, consuming
from voxbus.common.tenant_keys import TenantKeys
from voxbus.telephony import calls_api, exotel, metrics, seed, twilio, vonage
from voxbus.telephony.context import TELEPHONY, TelephonyContext
from voxbus.telephony.events import CallEventHandler
from voxbus.telephony.prompts import Greeting, Prompts

log = logging.getLogger(__name__)

GROUP = "telephony"  # the consumer group: TOPIC_PREFIX + this
CONSUMER = "telephony-consumer"  # the task, and its /ready check: ready means consuming


async def _context(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    greeting = None
    if settings.telephony_greeting_wav is not None:
        greeting = Greeting.load(
            settings.telephony_greeting_wav, max_seconds=settings.telephony_max_queued_seconds
        )
        log.info(
            "greeting loaded",
            extra={"path": str(settings.telephony_greeting_wav), "seconds": greeting.seconds},
        )
    if settings.vonage_signature_secret is None:
        log.warning(
            "VONAGE_SIGNATURE_SECRET is not set: Vonage webhooks and media sockets are taken unsigned"
        )
    app[TELEPHONY] = TelephonyContext(
        settings=settings,
        bus=app[BUS],
        keys=TenantKeys(settings, app[STORE]),
        calls=CallRecords(app[STORE]),
        prompts=Prompts(app[BUS], app[STORE], egress_topic=settings.topic(Topic.EGRESS), greeting=greeting),
        events_topic=settings.topic(Topic.EVENTS),
    )
    yield


def event_loop(app: web.Application, work: Work) -> ConsumerLoop:
    settings, ctx = app[SETTINGS], app[TELEPHONY]
    return ConsumerLoop(
        app[BUS],
        [settings.topic(Topic.EVENTS)],
        group_id=settings.consumer_group(GROUP),
        handler=CallEventHandler(ctx.calls, ctx.prompts),
        commit_when_idle=True,
        lag=metrics.CONSUMER_LAG,
        on_progress=work.progressed,
    )


def setup(app: web.Application) -> None:
    metrics.declare()
    app.cleanup_ctx.append(_context)
    app.cleanup_ctx.append(consuming(CONSUMER, event_loop))
    seed.add_routes(app)
    vonage.add_routes(app)
    exotel.add_routes(app)
    twilio.add_routes(app)
    calls_api.add_routes(app)


SERVICE = ServiceSpec(
    name="telephony",
    setup=setup,
    description="Carrier webhooks (Vonage, Exotel, Twilio), call records and prompts.",
)
