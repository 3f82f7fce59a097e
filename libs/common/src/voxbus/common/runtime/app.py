"""The aiohttp app factory every service (and `voxbus up`) is built with.

`create_app` makes the shared resources (bus, store) in one `cleanup_ctx` each, serves the admin
routes, then lets each service add its routes and its own `cleanup_ctx` entries. Cleanup contexts
run in order on start and in reverse on stop, so services stop before the bus they use.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Info, generate_latest

from voxbus.common import __version__
from voxbus.common.backends import make_bus, make_store
from voxbus.common.bus.base import Bus
from voxbus.common.consumer import ConsumerLoop
from voxbus.common.http_bodies import Health, ReadinessReport, ServiceInfo
from voxbus.common.runtime.api_docs import Operation, Reply, add_docs_routes, route
from voxbus.common.runtime.bad_requests import quiet_malformed_requests
from voxbus.common.runtime.loop_lag import monitor_loop_lag
from voxbus.common.runtime.readiness import Check, Readiness
from voxbus.common.runtime.supervise import Liveness, RestartPolicy, Work, describe, restarting
from voxbus.common.settings import Settings
from voxbus.common.store.base import StateStore

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
BUS = web.AppKey("bus", Bus)
STORE = web.AppKey("store", StateStore)
READINESS = web.AppKey("readiness", Readiness)
LIVENESS = web.AppKey("liveness", Liveness)
SERVICES: web.AppKey[tuple[str, ...]] = web.AppKey("services")

_BUILD_INFO = Info("voxbus_build", "voxbus version and the services this process runs")


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec:
    """A service as the runtime sees it: a name and a function that adds it to an app."""

    name: str
    setup: Callable[[web.Application], None]
    description: str


def create_app(
    settings: Settings,
    services: Sequence[ServiceSpec],
    *,
    bus: Bus | None = None,
    store: StateStore | None = None,
) -> web.Application:
    """An app running `services` over `bus`/`store` (made from settings when not given)."""
    quiet_malformed_requests()
    app = web.Application(client_max_size=settings.max_message_size_bytes)
    app[SETTINGS] = settings
    app[SERVICES] = tuple(service.name for service in services)
    app[READINESS] = Readiness()
    app[LIVENESS] = Liveness()
    app.cleanup_ctx.append(_backends(bus, store))
    app.cleanup_ctx.append(
        background("event-loop-monitor", lambda app, work: monitor_loop_lag(), ready=False)
    )
    _add_admin_routes(app)
    add_docs_routes(app)
    _BUILD_INFO.info({"version": __version__, "services": ",".join(s.name for s in services)})
    for service in services:
        service.setup(app)
    return app


def _backends(bus: Bus | None, store: StateStore | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """Start the bus and store (unless the caller owns them), create topics, close on stop."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        app[BUS] = bus if bus is not None else make_bus(settings)
        app[STORE] = store if store is not None else make_store(settings)
        owned = [resource for resource, given in ((app[BUS], bus), (app[STORE], store)) if given is None]
        for resource in owned:
            await resource.start()
        try:
            await app[BUS].create_topics(settings.topic_partitions())
            app[READINESS].add("bus", app[BUS].ping)
            app[READINESS].add("store", app[STORE].ping)
            log.info(
                "backends ready",
                extra={"bus": type(app[BUS]).__name__, "store": type(app[STORE]).__name__},
            )
            yield
        finally:
            for resource in reversed(owned):
                await resource.close()

    return context


def _add_admin_routes(app: web.Application) -> None:
    admin = "admin"
    route(
        app,
        "GET",
        "/",
        _info,
        Operation(
            summary="What this process is and serves",
            tag=admin,
            replies={200: Reply(description="This process.", body=ServiceInfo)},
        ),
    )
    route(
        app,
        "GET",
        "/health",
        _health,
        Operation(
            summary="Liveness",
            tag=admin,
            replies={
                200: Reply(description="The process can do its work.", body=Health),
                503: Reply(description="Some of its work stopped for good.", body=Health),
            },
        ),
    )
    route(
        app,
        "GET",
        "/ready",
        _ready,
        Operation(
            summary="Readiness: the bus, the store and every consumer",
            tag=admin,
            replies={
                200: Reply(description="Every check passes.", body=ReadinessReport),
                503: Reply(description="A check fails.", body=ReadinessReport),
            },
        ),
    )
    metrics = Reply(
        description="Prometheus text format.", media_type=CONTENT_TYPE_LATEST, schema={"type": "string"}
    )
    route(
        app,
        "GET",
        "/metrics",
        _metrics,
        Operation(summary="Prometheus metrics", tag=admin, replies={200: metrics}),
    )


async def _info(request: web.Request) -> web.Response:
    app = request.app
    paths = sorted({resource.canonical for resource in app.router.resources()})
    services: tuple[str, ...] = app[SERVICES]
    return ServiceInfo(version=__version__, services=list(services), endpoints=paths).response()


async def _health(request: web.Request) -> web.Response:
    """200 while the process can do its work; 503 with the reasons once some of it stopped for good."""
    failed = request.app[LIVENESS].failures()
    if failed:
        return Health(status="unhealthy", version=__version__, failed=failed).response(503)
    return Health(status="healthy", version=__version__).response()


async def _ready(request: web.Request) -> web.Response:
    checks = await request.app[READINESS].run()
    ready = all(result == "ok" for result in checks.values())
    return ReadinessReport(status="ready" if ready else "not_ready", checks=checks).response(
        200 if ready else 503
    )


async def _metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def restart_policy(settings: Settings) -> RestartPolicy:
    return RestartPolicy(
        backoff_seconds=settings.worker_restart_backoff_seconds,
        backoff_max_seconds=settings.worker_restart_backoff_max_seconds,
        max_failures=settings.worker_max_failures,
    )


def supervised(app: web.Application, name: str, coro: Coroutine[Any, Any, None]) -> "asyncio.Task[None]":
    """Run `coro` as a named task that cannot be restarted: once it dies, `/ready` and `/health`
    fail with the reason, and the log shows it."""
    task = asyncio.create_task(coro, name=name)
    work = Work(name, restart_policy(app[SETTINGS]), restartable=False)
    app[LIVENESS].add(work)

    async def alive() -> None:
        if task.done():
            raise RuntimeError(
                f"{name} stopped: {task.exception() if not task.cancelled() else 'cancelled'!r}"
            )

    def died(task: "asyncio.Task[None]") -> None:
        if task.cancelled():
            return
        exc = task.exception()
        work.crashed(describe(exc) if exc is not None else "returned")
        if exc is not None:
            log.error("background task %s crashed", task.get_name(), exc_info=exc)

    app[READINESS].add(name, alive)
    task.add_done_callback(died)
    return task


async def stop_tasks(tasks: Sequence["asyncio.Task[Any]"], *, timeout: float = 10.0) -> None:
    """Cancel owned tasks and wait for them (up to `timeout` seconds in all)."""
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
        async with asyncio.timeout(timeout):
            await asyncio.gather(*tasks, return_exceptions=True)


def background(
    name: str,
    run: Callable[[web.Application, Work], Coroutine[Any, Any, None]],
    *,
    stop_timeout: float = 10.0,
    ready: bool | Check = True,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A `cleanup_ctx` entry that runs `run(app, work)` for the app's lifetime, restarting it with
    backoff after a crash (`run` calls `work.progressed()` whenever it did useful work). `ready`:
    True, `/ready` fails while it waits to restart; a check, that check is `/ready`'s for it."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        work = Work(name, restart_policy(app[SETTINGS]))
        app[LIVENESS].add(work)
        task = asyncio.create_task(restarting(work, lambda work: run(app, work)), name=name)

        async def alive() -> None:
            if task.done():
                raise RuntimeError(f"{name} stopped")
            if not work.running:
                raise RuntimeError(f"{name} is waiting to restart after: {work.last_error}")

        if callable(ready):
            app[READINESS].add(name, ready)
        elif ready:
            app[READINESS].add(name, alive)
        try:
            yield
        finally:
            await stop_tasks([task], timeout=stop_timeout)

    return context


def consuming(
    name: str, make_loop: Callable[[web.Application, Work], ConsumerLoop]
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A consumer service's `cleanup_ctx` entry: `make_loop(app, work)` makes the loop of each
    run (a fresh handler after a crash, resuming from the last commit), restarted as `background`
    does; the `/ready` check `name` passes while the current loop consumes."""
    current: list[ConsumerLoop] = []

    async def run(app: web.Application, work: Work) -> None:
        loop = make_loop(app, work)
        current[:] = [loop]
        await loop.run()

    async def consuming_now() -> None:
        if not current:
            raise RuntimeError(f"not consuming yet: {name} has not started")
        await current[0].ready()

    return background(name, run, ready=consuming_now)
