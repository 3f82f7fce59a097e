"""Twilio's webhooks (docs/protocols/twilio.md): `POST /twilio/voice` answers TwiML that connects
the call to voxbus's media socket (`<Connect><Stream>`, built with the `twilio` package's TwiML
classes); `POST /twilio/status` records each status callback. When `TWILIO_AUTH_TOKEN` is set, a
request without Twilio's `X-Twilio-Signature` of it is refused with 401 and never recorded.
"""

import logging
import time
from collections.abc import Mapping

from aiohttp import web
from twilio.twiml.voice_response import Connect, VoiceResponse

from voxbus.common.call_events import CallStatus
from voxbus.common.call_state import CallStart
from voxbus.common.http_bodies import ErrorBody, ModeQuery, TwilioWebhook
from voxbus.common.runtime.api_docs import Operation, Reply, route
from voxbus.common.settings import TELEPHONY_MODES, call_mode
from voxbus.common.twilio_signature import signed
from voxbus.telephony import metrics
from voxbus.telephony.context import TELEPHONY
from voxbus.telephony.forms import FormError, form_fields
from voxbus.telephony.urls import socket_url

log = logging.getLogger(__name__)

PROVIDER = "twilio"
MEDIA_PATH = "/ws/twilio"
_TEXT = 128  # characters kept of an id, 64 of a party


async def _checked(request: web.Request, webhook: str) -> Mapping[str, str] | web.Response:
    """The form's fields, once the request is Twilio's and names a call."""
    try:
        form = {name: str(value) for name, value in (await form_fields(request)).items()}
    except FormError as exc:
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        return ErrorBody(error=f"Invalid {webhook} webhook", detail=str(exc)).response(400)
    if not signed(request.app[TELEPHONY].settings, request, form):
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "unsigned").inc()
        log.warning("twilio webhook refused: no valid X-Twilio-Signature", extra={"webhook": webhook})
        return ErrorBody(error="Invalid signature").response(401)
    call_sid = form.get("CallSid", "")
    if not 0 < len(call_sid) <= _TEXT:
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        return ErrorBody(error=f"Invalid {webhook} webhook", detail="CallSid: 1-128 characters").response(400)
    return form


def _start(form: Mapping[str, str], mode: str | None = None) -> CallStart:
    parties = {"from": form.get("From"), "to": form.get("To"), "direction": form.get("Direction")}
    return CallStart(
        call_id=form["CallSid"],
        provider=PROVIDER,
        parties={name: value[:64] for name, value in parties.items() if value},
        mode=mode,
    )


async def _status(request: web.Request, form: Mapping[str, str], start: CallStart) -> None:
    ctx = request.app[TELEPHONY]
    status = form.get("CallStatus", "")[:64]
    if not status:
        await ctx.calls.seen(start)
        return
    await ctx.calls.status(start, status, form.get("Timestamp", "")[:64] or None)
    metrics.call_status(PROVIDER, status)
    event = CallStatus(call_id=start.call_id, provider=PROVIDER, at=time.time(), status=status)
    try:
        await (await ctx.bus.send(ctx.events_topic, event.to_message()))
    except Exception as exc:  # the record has it; only the event stream misses it
        log.warning("call status not published", extra={"call_id": start.call_id, "reason": repr(exc)})


async def voice(request: web.Request) -> web.Response:
    checked = await _checked(request, "voice")
    if isinstance(checked, web.Response):
        return checked
    settings = request.app[TELEPHONY].settings
    mode = call_mode(request.query.get("mode", "")) or settings.telephony_mode
    if mode not in TELEPHONY_MODES:
        metrics.WEBHOOKS.labels(PROVIDER, "voice", "invalid").inc()
        return ErrorBody(error="Invalid mode", valid_values=list(TELEPHONY_MODES)).response(400)
    start = _start(checked, mode)
    await _status(request, checked, start)
    response, connect = VoiceResponse(), Connect()
    stream = connect.stream(url=socket_url(settings, MEDIA_PATH, {}))
    stream.parameter(name="mode", value=mode)
    stream.parameter(name="call", value=start.call_id)
    response.append(connect)
    metrics.WEBHOOKS.labels(PROVIDER, "voice", "ok").inc()
    log.info("call answered", extra={"call_id": start.call_id, "mode": mode})
    return web.Response(text=str(response), content_type="text/xml")


async def status(request: web.Request) -> web.Response:
    checked = await _checked(request, "status")
    if isinstance(checked, web.Response):
        return checked
    await _status(request, checked, _start(checked))
    metrics.WEBHOOKS.labels(PROVIDER, "status", "ok").inc()
    return web.Response(status=204)


_TAG = "twilio"
_SIGNED = " With `TWILIO_AUTH_TOKEN` set, the request must carry Twilio's `X-Twilio-Signature` of it."
_FORM = ("application/x-www-form-urlencoded",)
_INVALID = Reply(description="No `CallSid`, or an invalid `mode`.", body=ErrorBody)
_UNSIGNED = Reply(description="No valid signature (with `TWILIO_AUTH_TOKEN` set).", body=ErrorBody)


def add_routes(app: web.Application) -> None:
    route(
        app,
        "POST",
        "/twilio/voice",
        voice,
        Operation(
            summary="Twilio's voice webhook: TwiML that streams the call to `/ws/twilio`",
            description="`<Connect><Stream>` with the call's id and mode as stream parameters." + _SIGNED,
            tag=_TAG,
            query=ModeQuery,
            body=TwilioWebhook,
            body_types=_FORM,
            replies={
                200: Reply(description="TwiML.", media_type="text/xml", schema={"type": "string"}),
                400: _INVALID,
                401: _UNSIGNED,
            },
        ),
    )
    route(
        app,
        "POST",
        "/twilio/status",
        status,
        Operation(
            summary="Twilio's status callback: a call status, recorded",
            description=_SIGNED.strip(),
            tag=_TAG,
            body=TwilioWebhook,
            body_types=_FORM,
            replies={204: Reply(description="Recorded."), 400: _INVALID, 401: _UNSIGNED},
        ),
    )
