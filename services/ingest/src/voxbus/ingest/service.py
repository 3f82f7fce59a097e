"""The ingest service as the runtime sees it: its name and how it joins an app."""

from aiohttp import web

from voxbus.common.runtime import ServiceSpec


def setup(app: web.Application) -> None:
    """Add the ingest service's routes and background tasks to `app`.

    It needs only the shared bus, store and admin routes so far; its own work is added here.
    """


SERVICE = ServiceSpec(
    name="ingest",
    setup=setup,
    description="Client WebSockets in, audio records out to the bus; egress back to connected clients.",
)
