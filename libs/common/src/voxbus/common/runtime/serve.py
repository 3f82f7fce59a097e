"""Run an app until SIGTERM/SIGINT, then shut down gracefully within the configured budget.

The order: stop accepting, `on_shutdown` (services close live sockets, up to half of
`SHUTDOWN_TIMEOUT_SECONDS`), then aiohttp's runner waits up to the other half for handlers and
runs the cleanup contexts in reverse (consumers, producers flushed, leases released). Keep the
budget below Kubernetes' `terminationGracePeriodSeconds`.

`on_shutdown` runs before the runner's cleanup, which first stops reading every connection: a
socket closed after that never reads its client's close reply, and aiohttp ends the connection
only when its 10 s close timeout runs out, so a client that reports the close once the
connection ended (the `websockets` library does) would learn of it 10 s late. The cleanup runs
`on_shutdown` again, for a socket opened meanwhile, so a handler must not wait twice for the
same thing (ingest's `SocketConnection.restart` returns at once for a socket it is closing).
"""

import asyncio
import logging
import resource
import signal

from aiohttp import web

from voxbus.common.runtime import garbage
from voxbus.common.runtime.app import SERVICES, background
from voxbus.common.settings import ListenError, Settings

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _raise_open_file_limit() -> None:
    """Take the hard open-file limit as ours: a server holds a socket per client and files per
    recording, and the common soft limit of 1,024 would leave the writer 256 open recordings."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 65_536)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        log.info("open-file limit raised", extra={"from": soft, "to": wanted})


def serve(app: web.Application, settings: Settings) -> None:
    async def announce(app: web.Application) -> None:
        services: tuple[str, ...] = app[SERVICES]
        log.info(
            "listening",
            extra={
                "url": f"http://{settings.host}:{settings.port}",
                "services": list(services),
                "pod": settings.pod_name,
            },
        )
        garbage.settle()

    app.on_startup.append(announce)
    # a server's, not every app's: tests run many apps in one process, whose GC they leave alone
    app.cleanup_ctx.append(
        background("garbage-collector", lambda app, work: garbage.collect_fully(), ready=False)
    )
    _raise_open_file_limit()
    asyncio.run(_run(app, settings))
    log.info("stopped")


async def _run(app: web.Application, settings: Settings) -> None:
    # on_shutdown (ingest: every socket answers what it read, then 1012) takes up to half the
    # budget; aiohttp then waits for handlers only with the other half
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.shutdown_timeout_seconds / 2)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    # a signal during startup stops the server once it has started, so what started is cleaned
    # up; another signal while it stops changes nothing
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    try:
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port)
            try:
                await site.start()
            except OSError as exc:
                raise ListenError.on(settings.host, settings.port, exc, "HTTP", "PORT (or --port)") from exc
            await stop.wait()
            await site.stop()
            await app.shutdown()  # while aiohttp still reads the clients' close replies
        finally:
            await runner.cleanup()
    finally:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
