"""Twilio's signed requests (docs/protocols/twilio.md, signed requests): `X-Twilio-Signature`,
an HMAC-SHA1 with the account's auth token over the URL Twilio requested and its POST
parameters. The `twilio` package's `RequestValidator` computes and compares it; the URL is the
one the load balancer's client saw: `HOST_NAME`'s origin and the request's path and query."""

from collections.abc import Mapping

from aiohttp import web
from twilio.request_validator import RequestValidator

from voxbus.common.settings import Settings


def requested_url(settings: Settings, request: web.Request, *, socket: bool = False) -> str:
    """The URL as Twilio requested it (a media socket's in `wss://`, or `ws://` for http)."""
    scheme, _, host = settings.host_name.partition("://")
    if socket:
        scheme = "wss" if scheme == "https" else "ws"
    return f"{scheme}://{host}{request.path_qs}"


def signed(
    settings: Settings, request: web.Request, params: Mapping[str, str], *, socket: bool = False
) -> bool:
    """True when no `TWILIO_AUTH_TOKEN` is set, or the request carries Twilio's signature of it."""
    token = settings.twilio_auth_token
    if token is None:
        return True
    signature = request.headers.get("X-Twilio-Signature", "")
    url = requested_url(settings, request, socket=socket)
    return bool(signature) and bool(RequestValidator(token).validate(url, dict(params), signature))
