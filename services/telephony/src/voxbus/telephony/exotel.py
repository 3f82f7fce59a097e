"""Exotel's HTTP callbacks (docs/protocols/exotel.md): the Passthru applet's (`GET|POST
/exotel/passthru`) and the StatusCallback's (`GET|POST /exotel/status`), recorded in the call
record and answered 200 at once (Exotel retries what takes over 15 s).

When `EXOTEL_ALLOWED_IPS` is set, a callback from another address is refused with 403 (the address
is the peer's, or the one a `TRUSTED_PROXIES` load balancer forwarded); when `EXOTEL_API_KEY` and
`EXOTEL_API_TOKEN` are set, it must carry them as HTTP Basic auth, or it is refused with 401.
"""

import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from voxbus.common.call_events import CallStatus
from voxbus.common.call_state import CallStart
from voxbus.common.exotel_auth import refusal
from voxbus.common.exotel_callbacks import CallbackError, ExotelCallback
from voxbus.common.http_bodies import Accepted, ErrorBody, ExotelCallbackQuery, MediaSocketUrl, ModeQuery
from voxbus.common.runtime.api_docs import Operation, Reply, route
from voxbus.common.settings import TELEPHONY_MODES, call_mode
from voxbus.telephony import metrics
from voxbus.telephony.context import TELEPHONY
from voxbus.telephony.forms import FormError, form_fields
from voxbus.telephony.urls import socket_url

log = logging.getLogger(__name__)

PROVIDER = "exotel"
MEDIA_PATH = "/ws/exotel"
PASSTHRU = "passthru"  # the history entry a passthru callback adds


async def _fields(request: web.Request) -> Mapping[str, Any]:
    """The callback's fields: the query of a GET, or a POST's JSON object or form."""
    if request.method != "POST":
        return request.query
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            raise CallbackError("the body is not JSON") from None
        if not isinstance(body, dict):
            raise CallbackError("the body is not a JSON object")
        return body
    try:
        return await form_fields(request)
    except FormError as exc:
        raise CallbackError(str(exc)) from None


async def _callback(request: web.Request, webhook: str) -> tuple[ExotelCallback, CallStart] | web.Response:
    refused = refusal(request, request.app[TELEPHONY].settings)
    if refused is not None:
        metrics.WEBHOOKS.labels(PROVIDER, webhook, refused.reason).inc()
        return refused.response()
    try:
        callback = ExotelCallback.parse(await _fields(request))
    except CallbackError as exc:
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        return ErrorBody(error=f"Invalid {webhook} callback", detail=str(exc)).response(400)
    parties = {"from": callback.from_, "to": callback.to, "direction": callback.direction}
    start = CallStart(
        call_id=callback.call_sid,
        provider=PROVIDER,
        parties={name: value for name, value in parties.items() if value},
    )
    return callback, start


async def stream(request: web.Request) -> web.Response:
    """The Voicebot applet's URL: where Exotel opens the call's media socket. `?mode=` (or the
    applet's custom parameter `mode`) chooses the call's mode."""
    ctx = request.app[TELEPHONY]
    refused = refusal(request, ctx.settings)
    if refused is not None:
        metrics.WEBHOOKS.labels(PROVIDER, "stream", refused.reason).inc()
        return refused.response()
    query = {"sample-rate": str(ctx.settings.exotel_sample_rate)}
    mode = call_mode(request.query.get("mode", ""))
    if mode:
        if mode not in TELEPHONY_MODES:
            metrics.WEBHOOKS.labels(PROVIDER, "stream", "invalid").inc()
            return ErrorBody(error="Invalid mode", valid_values=list(TELEPHONY_MODES)).response(400)
        query["mode"] = mode
    metrics.WEBHOOKS.labels(PROVIDER, "stream", "ok").inc()
    return MediaSocketUrl(url=socket_url(ctx.settings, MEDIA_PATH, query)).response()


async def passthru(request: web.Request) -> web.Response:
    parsed = await _callback(request, "passthru")
    if isinstance(parsed, web.Response):
        return parsed
    callback, start = parsed
    calls = request.app[TELEPHONY].calls
    await calls.status(start, PASSTHRU, callback.time, latest=False)
    if callback.stream is not None:
        await calls.stream(callback.call_sid, callback.stream.model_dump(exclude_none=True))
    metrics.WEBHOOKS.labels(PROVIDER, "passthru", "ok").inc()
    log.info("exotel passthru", extra={"call_id": callback.call_sid})
    return Accepted().response()


async def status(request: web.Request) -> web.Response:
    parsed = await _callback(request, "status")
    if isinstance(parsed, web.Response):
        return parsed
    callback, start = parsed
    ctx = request.app[TELEPHONY]
    if callback.status is None:
        await ctx.calls.seen(start)
    else:
        await ctx.calls.status(start, callback.status, callback.time)
        metrics.call_status(PROVIDER, callback.status)
        event = CallStatus(
            call_id=callback.call_sid, provider=PROVIDER, at=time.time(), status=callback.status
        )
        try:
            await (await ctx.bus.send(ctx.events_topic, event.to_message()))
        except Exception as exc:  # the record has it; only the event stream misses it
            log.warning(
                "call status not published", extra={"call_id": callback.call_sid, "reason": repr(exc)}
            )
    metrics.WEBHOOKS.labels(PROVIDER, "status", "ok").inc()
    log.info("exotel status", extra={"call_id": callback.call_sid, "status": callback.status})
    return Accepted().response()


_TAG = "exotel"
_GUARDED = (
    " With `EXOTEL_ALLOWED_IPS` set, only from those addresses; with `EXOTEL_API_KEY` and "
    "`EXOTEL_API_TOKEN` set, only with them as HTTP Basic auth."
)
_REFUSALS = {
    401: Reply(description="No valid HTTP Basic credentials (when configured).", body=ErrorBody),
    403: Reply(description="An address `EXOTEL_ALLOWED_IPS` does not allow.", body=ErrorBody),
}
_CALLBACK_REPLIES = {
    200: Reply(description="Recorded in the call's record.", body=Accepted),
    400: Reply(description="Not a callback of a call (no `CallSid`).", body=ErrorBody),
    **_REFUSALS,
}
_CALLBACKS = {
    "/exotel/passthru": (passthru, "The Passthru applet's callback: a step of the call, and its stream"),
    "/exotel/status": (status, "The StatusCallback: a call status, recorded"),
}


def add_routes(app: web.Application) -> None:
    route(
        app,
        "GET",
        "/exotel/stream",
        stream,
        Operation(
            summary="The Voicebot applet's URL: where to open the call's media socket",
            description=_GUARDED.strip(),
            tag=_TAG,
            query=ModeQuery,
            replies={
                200: Reply(description="The media socket's URL.", body=MediaSocketUrl),
                400: Reply(description="An invalid `mode`.", body=ErrorBody),
                **_REFUSALS,
            },
        ),
    )
    for path, (handler, summary) in _CALLBACKS.items():
        route(
            app,
            "GET",
            path,
            handler,
            Operation(
                summary=summary + " (GET)",
                description="The fields in the query." + _GUARDED,
                tag=_TAG,
                query=ExotelCallbackQuery,
                replies=_CALLBACK_REPLIES,
            ),
            head=False,  # a GET records the callback
        )
        route(
            app,
            "POST",
            path,
            handler,
            Operation(
                summary=summary + " (POST)",
                description="The fields as a form or a JSON object." + _GUARDED,
                tag=_TAG,
                body=ExotelCallback,
                body_types=("application/x-www-form-urlencoded", "application/json"),
                replies=_CALLBACK_REPLIES,
            ),
        )
