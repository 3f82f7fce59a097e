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
from voxbus.common.settings import TELEPHONY_MODES, call_mode
from voxbus.common.twilio_signature import signed
from voxbus.telephony import metrics
from voxbus.telephony.context import TELEPHONY
from voxbus.telephony.urls import socket_url

log = logging.getLogger(__name__)

PROVIDER = "twilio"
MEDIA_PATH = "/ws/twilio"
_TEXT = 128  # characters kept of an id, 64 of a party


async def _checked(request: web.Request, webhook: str) -> Mapping[str, str] | web.Response:
    """The form's fields, once the request is Twilio's and names a call."""
    form = {name: str(value) for name, value in (await request.post()).items()}
    if not signed(request.app[TELEPHONY].settings, request, form):
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "unsigned").inc()
        log.warning("twilio webhook refused: no valid X-Twilio-Signature", extra={"webhook": webhook})
        return web.json_response({"error": "Invalid signature"}, status=401)
    call_sid = form.get("CallSid", "")
    if not 0 < len(call_sid) <= _TEXT:
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        return web.json_response(
            {"error": f"Invalid {webhook} webhook", "detail": "CallSid: 1-128 characters"}, status=400
        )
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
        return web.json_response({"error": "Invalid mode", "valid_values": list(TELEPHONY_MODES)}, status=400)
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


def add_routes(app: web.Application) -> None:
    app.router.add_post("/twilio/voice", voice)
    app.router.add_post("/twilio/status", status)
