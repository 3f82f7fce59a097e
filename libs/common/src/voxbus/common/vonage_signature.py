"""Vonage's signed requests (docs/protocols/vonage.md, signed webhooks): `Authorization: Bearer
<JWT>`, HS256 with the account's signature secret, and for a request with a body the body's
SHA-256 in the `payload_hash` claim. The telephony service checks its webhooks with it, ingest the
media socket's upgrade request (which has no body). PyJWT does the cryptography."""

import hashlib
import hmac
from typing import Any

import jwt

LEEWAY_SECONDS = 300  # clock skew between Vonage and this host taken on `iat`/`exp`/`nbf`


class SignatureError(Exception):
    """The request is not signed by Vonage with our secret; the message says why (for logs)."""


def bearer_token(authorization: str | None) -> str | None:
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def verify(secret: str, authorization: str | None, body: bytes | None) -> dict[str, Any]:
    """The token's claims if `authorization` carries a JWT signed with `secret` whose
    `payload_hash` (required when `body` is not empty) is the body's SHA-256; else `SignatureError`."""
    token = bearer_token(authorization)
    if token is None:
        raise SignatureError("no Authorization: Bearer token")
    try:
        claims: dict[str, Any] = jwt.decode(
            token, secret, algorithms=["HS256"], leeway=LEEWAY_SECONDS, options={"require": ["iat"]}
        )
    except jwt.PyJWTError as exc:
        raise SignatureError(f"invalid token: {exc}") from None
    claimed = claims.get("payload_hash")
    if body:
        if not isinstance(claimed, str):
            raise SignatureError("the token has no payload_hash for the request's body")
        actual = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(claimed.lower().encode(), actual.encode()):
            raise SignatureError("payload_hash does not match the request's body")
    return claims
