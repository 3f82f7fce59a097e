"""Vonage's signed requests (docs/protocols/vonage.md, signed webhooks): `Authorization: Bearer
<JWT>`, HS256 with the account's signature secret, and for a request with a body the body's
SHA-256 in the `payload_hash` claim. The telephony service checks its webhooks with it, ingest the
media socket's upgrade request (which has no body). PyJWT does the cryptography."""

import hashlib
import hmac
import time
from typing import Any

import jwt

LEEWAY_SECONDS = 300  # clock skew between Vonage and this host taken on `iat`/`exp`/`nbf`
# a token older than this is refused (Vonage's tokens carry no `exp`): a request captured on the
# way cannot be replayed for ever
MAX_AGE_SECONDS = 900


class SignatureError(Exception):
    """The request is not signed by Vonage with our secret; the message says why (for logs)."""


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def verify(secret: str, authorization: str | None, body: bytes | None) -> dict[str, Any]:
    """The token's claims if `authorization` carries a JWT signed with `secret`, issued in the
    last `MAX_AGE_SECONDS`, whose `payload_hash` (required when `body` is not empty) is the body's
    SHA-256; else `SignatureError`."""
    token = bearer_token(authorization)
    if token is None:
        raise SignatureError("no Authorization: Bearer token")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=LEEWAY_SECONDS, options={"require": ["iat"]}
        )
    except jwt.PyJWTError as exc:
        raise SignatureError(f"invalid token: {exc}") from None
    issued = claims["iat"]
    if not isinstance(issued, int | float) or time.time() - issued > MAX_AGE_SECONDS:
        raise SignatureError(f"the token was issued more than {MAX_AGE_SECONDS} s ago")
    claimed = claims.get("payload_hash")
    if body:
        if not isinstance(claimed, str):
            raise SignatureError("the token has no payload_hash for the request's body")
        actual = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(claimed.lower().encode(), actual.encode()):
            raise SignatureError("payload_hash does not match the request's body")
    return claims
