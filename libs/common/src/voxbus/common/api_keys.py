"""API keys (docs/api.md, Authentication): Bearer, X-API-Key, ?api_key= or ?token=, compared in
constant time."""

import hmac

from aiohttp import web

from voxbus.common.settings import Settings


def presented_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get("X-API-Key") or request.query.get("api_key") or request.query.get("token")


def authorized(settings: Settings, request: web.Request) -> bool:
    """True when no key is configured, or the request presents one of the configured keys."""
    return key_matches(settings, presented_key(request))


def key_matches(settings: Settings, key: str | None) -> bool:
    """True when no key is configured, or `key` is one of the configured keys."""
    if not settings.api_key:
        return True
    presented = (key or "").encode()
    # compare against every key, so the time taken does not tell which one (or whether any) matched
    matches = [hmac.compare_digest(presented, key.encode()) for key in settings.api_key]
    return any(matches)
