"""Whether a request is Exotel's (docs/protocols/exotel.md, who may call): by address, when
`EXOTEL_ALLOWED_IPS` is set (the peer's, or the one a `TRUSTED_PROXIES` load balancer forwarded),
and by HTTP Basic credentials, when `EXOTEL_API_KEY` and `EXOTEL_API_TOKEN` are set (the
dashboard's `https://KEY:TOKEN@host/…`). The telephony service checks its callbacks with it,
ingest the media socket's upgrade request."""

import base64
import binascii
import hmac
import logging
from dataclasses import dataclass

from aiohttp import hdrs, web

from voxbus.common.client_address import allowed, client_address
from voxbus.common.http_bodies import ErrorBody
from voxbus.common.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is not Exotel's: `reason` for metrics, and the HTTP answer."""

    reason: str
    status: int
    error: str

    def response(self) -> web.Response:
        response = ErrorBody(error=self.error).response(self.status)
        if self.status == 401:
            response.headers[hdrs.WWW_AUTHENTICATE] = 'Basic realm="voxbus"'
        return response


def refusal(request: web.Request, settings: Settings) -> Refusal | None:
    """None when the request may come from Exotel."""
    if settings.exotel_allowed_ips:
        address = client_address(request, settings.trusted_proxies)
        if not allowed(address, settings.exotel_allowed_ips):
            log.warning("exotel request refused: address not allowed", extra={"address": str(address)})
            return Refusal("address", 403, "Address not allowed")
    if settings.exotel_api_key is not None and settings.exotel_api_token is not None:
        expected = f"{settings.exotel_api_key}:{settings.exotel_api_token}".encode()
        if not hmac.compare_digest(_basic_credentials(request), expected):
            log.warning("exotel request refused: no valid Basic credentials")
            return Refusal("unsigned", 401, "Invalid credentials")
    return None


def _basic_credentials(request: web.Request) -> bytes:
    scheme, _, encoded = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "basic":
        return b""
    try:
        return base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return b""
