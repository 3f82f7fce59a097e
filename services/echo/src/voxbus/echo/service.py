"""The echo service as the runtime sees it: its name and how it joins an app."""

from aiohttp import web

from voxbus.common.runtime import ServiceSpec


def setup(app: web.Application) -> None:
    """Add the echo service's routes and background tasks to `app`.

    It needs only the shared bus, store and admin routes so far; its own work is added here.
    """


SERVICE = ServiceSpec(
    name="echo",
    setup=setup,
    description="Audio from voxbus.audio.raw back to the client through voxbus.egress, on time.",
)
