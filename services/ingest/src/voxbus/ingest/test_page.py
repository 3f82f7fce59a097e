"""`/test`: the page a person tries voxbus with in a browser (the microphone to any WebSocket
endpoint, acks, echo playback, counters, the recording's links), and its two scripts under
`/test/assets/`. Plain files in `test_page/`: no build step, nothing from a CDN."""

from pathlib import Path
from typing import Final

from aiohttp import web

from voxbus.common.runtime.api_docs import Operation, Reply, route

PAGE_DIR: Final = Path(__file__).parent / "test_page"


async def page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(PAGE_DIR / "index.html", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    html = Reply(description="The page.", media_type="text/html", schema={"type": "string"})
    route(
        app,
        "GET",
        "/test",
        page,
        Operation(
            summary="The browser test page: the microphone to any endpoint", tag="test", replies={200: html}
        ),
    )
    app.router.add_static("/test/assets", PAGE_DIR)
