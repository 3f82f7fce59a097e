"""Vonage's webhooks (docs/protocols/vonage.md): `GET|POST /vonage/answer` returns the NCCO that
connects the call to voxbus's media socket; `POST /vonage/event` records each status.

Stateless: any telephony instance answers any webhook (the call record is in the state store).
When `VONAGE_SIGNATURE_SECRET` is set, a webhook without a valid signature (HS256 JWT, the body's
hash in its `payload_hash` claim) is refused with 401 and never recorded; the NCCO then asks
Vonage to sign the media socket's request too.
"""

import json
import logging
import time
from typing import Any

from aiohttp import web

from voxbus.common.call_events import CallStatus
from voxbus.common.call_state import CallStart
from voxbus.common.carrier_events import CarrierMessageError
from voxbus.common.settings import TELEPHONY_MODES, Settings, call_mode
from voxbus.common.vonage_messages import (
    CallWebhook,
    ConnectAction,
    SocketAuthorization,
    TalkAction,
    WebsocketEndpoint,
    content_type,
    ncco,
)
from voxbus.common.vonage_signature import SignatureError, verify
from voxbus.telephony import metrics
from voxbus.telephony.context import TELEPHONY
from voxbus.telephony.urls import socket_url

log = logging.getLogger(__name__)

PROVIDER = "vonage"
MEDIA_PATH = "/ws/vonage"
_PARTY_LIMIT = 64  # characters of `from`/`to` kept (phone numbers, SIP URIs)


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        self.response = response


async def _signed_body(request: web.Request, webhook: str) -> bytes:
    """The request's body, once its signature checks out (when a secret is set)."""
    body = await request.read()
    secret = request.app[TELEPHONY].settings.vonage_signature_secret
    if secret is not None:
        try:
            verify(secret, request.headers.get("Authorization"), body)
        except SignatureError as exc:
            metrics.WEBHOOKS.labels(PROVIDER, webhook, "unsigned").inc()
            log.warning("webhook refused: %s", exc, extra={"webhook": webhook})
            raise _Refused(web.json_response({"error": "Invalid signature"}, status=401)) from None
    return body


def _webhook(data: Any, webhook: str) -> CallWebhook:
    try:
        return CallWebhook.parse(data, what=f"{webhook} webhook")
    except CarrierMessageError as exc:
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        log.warning("webhook refused: %s", exc, extra={"webhook": webhook})
        raise _Refused(
            web.json_response({"error": f"Invalid {webhook} webhook", "detail": str(exc)}, status=400)
        ) from None


def _json(body: bytes, webhook: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        raise _Refused(
            web.json_response(
                {"error": f"Invalid {webhook} webhook", "detail": "the body is not JSON"}, status=400
            )
        ) from None


def _start(webhook: CallWebhook, mode: str | None = None) -> CallStart:
    parties = {
        "from": webhook.from_,
        "to": webhook.to,
        "direction": webhook.direction,
        "conversation_id": webhook.conversation_uuid,
    }
    return CallStart(
        call_id=webhook.uuid,
        provider=PROVIDER,
        parties={name: value[:_PARTY_LIMIT] for name, value in parties.items() if value},
        mode=mode,
    )


def media_url(settings: Settings, call_id: str, mode: str) -> str:
    return socket_url(settings, MEDIA_PATH, {"call": call_id, "mode": mode})


def answer_ncco(settings: Settings, webhook: CallWebhook, mode: str) -> list[dict[str, Any]]:
    headers = {"call_uuid": webhook.uuid, "mode": mode}
    if webhook.from_:
        headers["from"] = webhook.from_[:_PARTY_LIMIT]
    connect = ConnectAction(
        event_url=[settings.host_name + "/vonage/event"],
        endpoint=[
            WebsocketEndpoint(
                uri=media_url(settings, webhook.uuid, mode),
                content_type=content_type(settings.vonage_sample_rate),
                headers=headers,
            )
        ],
        authorization=SocketAuthorization() if settings.vonage_signature_secret else None,
    )
    greeting = settings.telephony_greeting_text
    return ncco(TalkAction(text=greeting), connect) if greeting else ncco(connect)


async def answer(request: web.Request) -> web.Response:
    ctx = request.app[TELEPHONY]
    try:
        body = await _signed_body(request, "answer")
        data = _json(body, "answer") if request.method == "POST" else dict(request.query)
        webhook = _webhook(data, "answer")
    except _Refused as refused:
        return refused.response
    mode = call_mode(request.query.get("mode", "")) or ctx.settings.telephony_mode
    if mode not in TELEPHONY_MODES:
        metrics.WEBHOOKS.labels(PROVIDER, "answer", "invalid").inc()
        return web.json_response({"error": "Invalid mode", "valid_values": list(TELEPHONY_MODES)}, status=400)
    await ctx.calls.seen(_start(webhook, mode))
    metrics.WEBHOOKS.labels(PROVIDER, "answer", "ok").inc()
    log.info("call answered", extra={"call_id": webhook.uuid, "mode": mode})
    return web.json_response(answer_ncco(ctx.settings, webhook, mode))


async def event(request: web.Request) -> web.Response:
    ctx = request.app[TELEPHONY]
    try:
        webhook = _webhook(_json(await _signed_body(request, "event"), "event"), "event")
    except _Refused as refused:
        return refused.response
    start = _start(webhook)
    if webhook.status is None:
        await ctx.calls.seen(start)
    else:
        await ctx.calls.status(start, webhook.status, webhook.timestamp)
        status = CallStatus(call_id=webhook.uuid, provider=PROVIDER, at=time.time(), status=webhook.status)
        try:
            await (await ctx.bus.send(ctx.events_topic, status.to_message()))
        except Exception as exc:  # the record has it; only the event stream misses it
            log.warning("call status not published", extra={"call_id": webhook.uuid, "reason": repr(exc)})
    metrics.WEBHOOKS.labels(PROVIDER, "event", "ok").inc()
    log.info("call event", extra={"call_id": webhook.uuid, "status": webhook.status})
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_route("GET", "/vonage/answer", answer)
    app.router.add_route("POST", "/vonage/answer", answer)
    app.router.add_post("/vonage/event", event)
