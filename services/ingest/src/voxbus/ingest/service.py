"""The ingest service: client WebSockets, the session HTTP API, egress back to the sockets."""

import asyncio
import functools
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from voxbus.common.bus.base import Bus
from voxbus.common.constants import Topic
from voxbus.common.runtime import BUS, READINESS, SETTINGS, STORE, ServiceSpec, stop_tasks, supervised
from voxbus.common.runtime.api_docs import route
from voxbus.common.settings import Settings
from voxbus.common.tenant_keys import TenantKeys
from voxbus.ingest import http_api, keys_api, metrics, reaper, test_page
from voxbus.ingest.acks import AckWriter
from voxbus.ingest.connection import MIB, serve_socket
from voxbus.ingest.context import INGEST, IngestContext
from voxbus.ingest.egress import EgressRouter
from voxbus.ingest.leases import LeaseKeeper
from voxbus.ingest.pods import claim_pod_name
from voxbus.ingest.protocols import ROUTES, Adapter
from voxbus.ingest.protocols.wyoming import WyomingTcpAdapter
from voxbus.ingest.sessions import SessionRegistry
from voxbus.ingest.socket_docs import SOCKETS
from voxbus.ingest.wyoming_tcp import WyomingTcpServer

log = logging.getLogger(__name__)

WYOMING_TCP = web.AppKey("wyoming-tcp", WyomingTcpServer)


async def _ingest(app: web.Application) -> AsyncIterator[None]:
    settings, bus, store = app[SETTINGS], app[BUS], app[STORE]
    lease_ms = int(settings.lease_seconds * 1000)
    egress = settings.topic(Topic.EGRESS)
    # a topic made earlier with fewer partitions keeps them (the bus warns): lease only those it
    # has, since a tail on a partition that does not exist waits forever for its offsets
    partitions = min(settings.egress_partitions, await bus.partition_count(egress))
    max_chunk_bytes = await _max_chunk_bytes(settings, bus)
    leases = LeaseKeeper(store, lease_ms=lease_ms)
    await claim_pod_name(store, leases, settings.pod_name, lease_ms=lease_ms)
    # renewed from now on, and released on every way out, however far startup got
    tasks = [supervised(app, "ingest-leases", leases.run())]
    router = EgressRouter(
        bus,
        store,
        leases,
        topic=egress,
        partitions=partitions,
        pod=settings.pod_name,
        send_ahead=settings.echo_send_ahead_ms / 1000,
    )
    try:
        await router.start()
        ctx = IngestContext(
            settings=settings,
            bus=bus,
            store=store,
            keys=TenantKeys(settings, store),
            registry=SessionRegistry(store, pod=settings.pod_name),
            leases=leases,
            router=router,
            acks=AckWriter(),
            raw_topic=settings.topic(Topic.AUDIO_RAW),
            events_topic=settings.topic(Topic.EVENTS),
            max_chunk_bytes=max_chunk_bytes,
            connections=set(),
        )
        app[INGEST] = ctx
        if not settings.api_key and await ctx.keys.any_made():
            log.warning(
                "tenant keys exist but API_KEY is not set: the server is open, every caller sees every tenant"
            )
        if settings.wyoming_port:
            wyoming = WyomingTcpServer(ctx)
            await wyoming.start(settings.host, settings.wyoming_port)
            app[WYOMING_TCP] = wyoming
        app[READINESS].add("egress-lease", router.ready)
        tasks += [
            supervised(app, "ingest-egress", router.run(settings.lease_seconds / 3)),
            supervised(app, "ingest-egress-held", router.run_held()),
            supervised(app, "ingest-reaper", reaper.run(ctx)),
            supervised(app, "ingest-acks", ctx.acks.run()),
        ]
        yield
    finally:
        if WYOMING_TCP in app:
            await app[WYOMING_TCP].stop(settings.shutdown_timeout_seconds / 4)
        await stop_tasks(tasks)
        await router.stop()
        await leases.release_all()


async def _max_chunk_bytes(settings: Settings, bus: Bus) -> int:
    """MAX_CHUNK_SIZE_MB and MAX_MESSAGE_SIZE_BYTES, and what the raw audio topic and the egress
    topic (a chunk comes back as one echo) take: a chunk the bus refused would be lost for this
    session, and over Kafka would fail every later chunk on its partition."""
    limit = min(settings.max_message_size_bytes, int(settings.max_chunk_size_mb * MIB))
    for topic in (settings.topic(Topic.AUDIO_RAW), settings.topic(Topic.EGRESS)):
        taken = await bus.record_limit(topic)
        if taken is not None and taken < limit:
            log.warning(
                "topic takes smaller records than the configured message limit; chunks are limited to it",
                extra={"topic": topic, "max_bytes": taken, "configured": limit},
            )
            limit = taken
    return limit


async def _close_sockets(app: web.Application) -> None:
    """Shutdown: every client is told to reconnect elsewhere (1012) and can resume there, once
    each chunk its socket read was answered and counted (`SocketConnection.restart`)."""
    ctx = app.get(INGEST)
    if ctx is None:
        return
    if WYOMING_TCP in app:
        app[WYOMING_TCP].stop_accepting()
    restarts = (conn.restart() for conn in list(ctx.connections))
    results = await asyncio.gather(*restarts, return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("closing a socket at shutdown failed", extra={"reason": repr(result)})


def setup(app: web.Application) -> None:
    adapters: list[type[Adapter]] = [*ROUTES.values(), WyomingTcpAdapter]
    metrics.declare({adapter.protocol: adapter.rejections for adapter in adapters})
    app.cleanup_ctx.append(_ingest)
    app.on_shutdown.append(_close_sockets)
    for path, adapter in ROUTES.items():
        route(app, "GET", path, functools.partial(serve_socket, adapter_class=adapter), SOCKETS[path])
    http_api.add_routes(app)
    keys_api.add_routes(app)
    test_page.add_routes(app)


SERVICE = ServiceSpec(
    name="ingest",
    setup=setup,
    description="Client WebSockets in, audio records out to the bus; egress back to connected clients.",
)
