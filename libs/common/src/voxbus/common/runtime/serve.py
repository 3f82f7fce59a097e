"""Run an app until SIGTERM/SIGINT, then shut down gracefully within the configured budget.

aiohttp's runner does the ordering: stop accepting, `on_shutdown` (services close live sockets),
wait up to `SHUTDOWN_TIMEOUT_SECONDS` for handlers, then the cleanup contexts in reverse
(consumers, producers flushed, leases released). Keep the budget below Kubernetes'
`terminationGracePeriodSeconds`.
"""

import logging

from aiohttp import web

from voxbus.common.runtime.app import SERVICES
from voxbus.common.settings import Settings

log = logging.getLogger(__name__)


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

    app.on_startup.append(announce)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        shutdown_timeout=settings.shutdown_timeout_seconds,
        access_log=None,
        print=None,
        handle_signals=True,
    )
    log.info("stopped")
