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
from voxbus.common.http_bodies import ErrorBody, ModeQuery, VonageAnswerQuery
from voxbus.common.runtime.api_docs import Operation, Reply, route
from voxbus.common.settings import TELEPHONY_MODES, Settings, call_mode
from voxbus.common.vonage_messages import (
    CallWebhook,
    ConnectAction,
    Ncco,
    SocketAuthorization,
    TalkAction,
    WebsocketEndpoint,
    content_type,
    ncco,
    ncco_response,
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
            raise _Refused(ErrorBody(error="Invalid signature").response(401)) from None
    return body


def _webhook(data: Any, webhook: str) -> CallWebhook:
    try:
        return CallWebhook.parse(data, what=f"{webhook} webhook")
    except CarrierMessageError as exc:
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        log.warning("webhook refused: %s", exc, extra={"webhook": webhook})
        raise _Refused(ErrorBody(error=f"Invalid {webhook} webhook", detail=str(exc)).response(400)) from None


def _json(body: bytes, webhook: str) -> Any:
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        metrics.WEBHOOKS.labels(PROVIDER, webhook, "invalid").inc()
        raise _Refused(
            ErrorBody(error=f"Invalid {webhook} webhook", detail="the body is not JSON").response(400)
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


def answer_ncco(settings: Settings, webhook: CallWebhook, mode: str) -> Ncco:
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
        return ErrorBody(error="Invalid mode", valid_values=list(TELEPHONY_MODES)).response(400)
    await ctx.calls.seen(_start(webhook, mode))
    metrics.WEBHOOKS.labels(PROVIDER, "answer", "ok").inc()
    log.info("call answered", extra={"call_id": webhook.uuid, "mode": mode})
    return ncco_response(answer_ncco(ctx.settings, webhook, mode))


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
        metrics.call_status(PROVIDER, webhook.status)
        status = CallStatus(call_id=webhook.uuid, provider=PROVIDER, at=time.time(), status=webhook.status)
        try:
            await (await ctx.bus.send(ctx.events_topic, status.to_message()))
        except Exception as exc:  # the record has it; only the event stream misses it
            log.warning("call status not published", extra={"call_id": webhook.uuid, "reason": repr(exc)})
    metrics.WEBHOOKS.labels(PROVIDER, "event", "ok").inc()
    log.info("call event", extra={"call_id": webhook.uuid, "status": webhook.status})
    return web.Response(status=204)


_TAG = "vonage"
_SIGNED = (
    " With `VONAGE_SIGNATURE_SECRET` set, the request must carry Vonage's signature "
    "(`Authorization: Bearer <JWT>`, HS256, the body's SHA-256 in its `payload_hash` claim)."
)
_INVALID = Reply(description="Not a webhook of a call, or an invalid `mode`.", body=ErrorBody)
_UNSIGNED = Reply(description="No valid signature (with `VONAGE_SIGNATURE_SECRET` set).", body=ErrorBody)
_ANSWERED = Reply(description="The NCCO: a greeting (when set), then connect to `/ws/vonage`.", body=Ncco)


def add_routes(app: web.Application) -> None:
    route(
        app,
        "GET",
        "/vonage/answer",
        answer,
        Operation(
            summary="Vonage's answer webhook (GET): the call's NCCO",
            description="The call's fields in the query; `?mode=` chooses the call's mode "
            "(record, echo, record+echo; default `TELEPHONY_MODE`)." + _SIGNED,
            tag=_TAG,
            query=VonageAnswerQuery,
            replies={200: _ANSWERED, 400: _INVALID, 401: _UNSIGNED},
        ),
        head=False,  # a GET records the call
    )
    route(
        app,
        "POST",
        "/vonage/answer",
        answer,
        Operation(
            summary="Vonage's answer webhook (POST): the call's NCCO",
            description="The call's fields as a JSON body." + _SIGNED,
            tag=_TAG,
            query=ModeQuery,
            body=CallWebhook,
            replies={200: _ANSWERED, 400: _INVALID, 401: _UNSIGNED},
        ),
    )
    route(
        app,
        "POST",
        "/vonage/event",
        event,
        Operation(
            summary="Vonage's event webhook: a call status, recorded",
            description="Each status goes into the call's record and the call events topic." + _SIGNED,
            tag=_TAG,
            body=CallWebhook,
            replies={204: Reply(description="Recorded."), 400: _INVALID, 401: _UNSIGNED},
        ),
    )
