"""The NCCO helpers of the echo server voxbus replaces (docs/protocols/vonage.md, seed helpers),
unchanged for its clients: `GET /ncco/talk`, `GET /ncco/connect?endpoint=`, `GET|POST /callback`."""

import json
import logging
import re
from typing import Final

from aiohttp import web

from voxbus.common.http_bodies import ErrorBody, NccoConnectQuery, NccoTalkQuery
from voxbus.common.runtime import SETTINGS
from voxbus.common.runtime.api_docs import Operation, Reply, route
from voxbus.common.vonage_messages import (
    ConnectAction,
    Endpoint,
    Ncco,
    PhoneEndpoint,
    SipEndpoint,
    TalkAction,
    WebsocketEndpoint,
    ncco,
    ncco_response,
)

log = logging.getLogger(__name__)

DEFAULT_TALK: Final = "Hello from voxbus."
_PHONE = re.compile(r"\+?\d{1,20}")
_LOGGED_BODY: Final = 2048  # characters of a callback's body put in the log


async def talk(request: web.Request) -> web.Response:
    return ncco_response(ncco(TalkAction(text=request.query.get("text", DEFAULT_TALK)[:1500])))


async def connect(request: web.Request) -> web.Response:
    given = request.query.get("endpoint", "").strip()
    endpoint: Endpoint
    if given.startswith(("ws://", "wss://")):
        endpoint = WebsocketEndpoint(uri=given)
    elif given.startswith("sip:"):
        endpoint = SipEndpoint(uri=given)
    elif _PHONE.fullmatch(given):
        endpoint = PhoneEndpoint(number=given)
    else:
        return ErrorBody(
            error="Invalid endpoint: give ws:// or wss:// (a WebSocket), sip: (a SIP URI), "
            "or a phone number (digits, optionally with a leading +)",
            endpoint=given[:200],
        ).response(400)
    event_url = request.app[SETTINGS].host_name + "/callback"
    return ncco_response(ncco(ConnectAction(event_url=[event_url], endpoint=[endpoint])))


async def callback(request: web.Request) -> web.Response:
    """204 whatever comes: a JSON body is logged as JSON, anything else (or a body too long to
    log whole) as the start of its text."""
    body = await request.read()
    text = body.decode("utf-8", errors="replace")
    try:
        if len(text) > _LOGGED_BODY:
            raise ValueError("too long to log whole")
        logged: object = json.loads(text) if body else None
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        logged = text[:_LOGGED_BODY]
        log.info("callback with a body that is not JSON", extra={"body": logged, "method": request.method})
    else:
        query = {
            name: "<key>" if name in ("api_key", "token") else value for name, value in request.query.items()
        }
        log.info("callback", extra={"body": logged, "method": request.method, "query": query})
    return web.Response(status=204)


_TAG = "vonage"
_NCCO = Reply(description="The NCCO.", body=Ncco)
_CALLBACK = Operation(
    summary="Log whatever Vonage reports (the seed's event URL)",
    tag=_TAG,
    replies={204: Reply(description="Logged.")},
)


def add_routes(app: web.Application) -> None:
    route(
        app,
        "GET",
        "/ncco/talk",
        talk,
        Operation(summary="An NCCO that speaks `text`", tag=_TAG, query=NccoTalkQuery, replies={200: _NCCO}),
    )
    route(
        app,
        "GET",
        "/ncco/connect",
        connect,
        Operation(
            summary="An NCCO that connects the call to `endpoint`",
            tag=_TAG,
            query=NccoConnectQuery,
            replies={
                200: _NCCO,
                400: Reply(description="Not a WebSocket, SIP URI or number.", body=ErrorBody),
            },
        ),
    )
    route(app, "GET", "/callback", callback, _CALLBACK, head=False)
    route(app, "POST", "/callback", callback, _CALLBACK)
