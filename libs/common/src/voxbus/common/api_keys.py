"""Who a request is (docs/security.md, Tenants): the admin `API_KEY`s from the settings, and
tenant keys kept hashed in the state store.

A key is presented as `Authorization: Bearer`, `X-API-Key`, `?api_key=` or `?token=`. With no
`API_KEY` set the server is open and everyone is the operator. Otherwise an admin key makes the
request the operator's (every tenant's data, the key API); a tenant key `vbk_<key id>_<secret>`
makes it that tenant's, with the key's scopes; anything else is refused. A tenant key is looked
up at each request, so one created or revoked on any pod counts everywhere at once, no restart.
Every comparison takes the same time whatever matched; keys are never logged.
"""

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from pydantic import ValidationError

from voxbus.common.constants import Key
from voxbus.common.http_bodies import KEY_SCOPES, ErrorBody, KeyCreated, KeyInfo, KeyRequest, KeyScope
from voxbus.common.settings import Settings
from voxbus.common.store.base import StateStore

PREFIX: Final = "vbk"
_ID_HEX: Final = 12  # 48 random bits: ids are public, the secret after them is what counts
_SECRET_BYTES: Final = 32
MAX_LISTED: Final = 1000
_MAX_PRESENTED: Final = 200  # longer than any key: refused without a lookup
# compared against when the id names no key, so a miss costs what a mismatch does
_NO_DIGEST: Final = hashlib.sha256(b"no such key").hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: the operator (`tenant` None) or one tenant, with its scopes."""

    tenant: str | None
    scopes: frozenset[KeyScope]
    key_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.tenant is None

    def may(self, scope: KeyScope) -> bool:
        return scope in self.scopes

    def owns(self, tenant: str) -> bool:
        """Whether a record of `tenant` ("" the operator's) is this principal's to see."""
        return self.tenant is None or self.tenant == tenant

    @property
    def session_tenant(self) -> str:
        """The tenant a session it opens belongs to ("" the operator's)."""
        return self.tenant or ""


OPERATOR: Final = Principal(tenant=None, scopes=frozenset(KEY_SCOPES))


def presented_key(request: web.Request) -> str | None:
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get("X-API-Key") or request.query.get("api_key") or request.query.get("token")


def is_admin_key(settings: Settings, key: str | None) -> bool:
    """`key` is one of the settings' `API_KEY`s (compared with every one, in constant time)."""
    presented = (key or "").encode()
    matches = [hmac.compare_digest(presented, admin.encode()) for admin in settings.api_key]
    return any(matches)


def _digest(key: str) -> str:
    # keys are 256 random bits: a fast hash is as strong as a slow one against guessing
    return hashlib.sha256(key.encode()).hexdigest()


def _key_id(key: str) -> str | None:
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != _ID_HEX or not secret:
        return None
    return key_id if all(c in "0123456789abcdef" for c in key_id) else None


class TenantKeys:
    """Tenant keys in the state store: `Key.TENANT_KEY` + id is a hash of the tenant, scopes,
    name, SHA-256 of the key, creation and revocation times; `Key.TENANT_KEYS` lists the ids."""

    def __init__(self, settings: Settings, store: StateStore) -> None:
        self._settings, self._store = settings, store

    async def of_request(self, request: web.Request) -> Principal | None:
        return await self.principal(presented_key(request))

    async def principal(self, key: str | None) -> Principal | None:
        """Who `key` makes the caller; None: refused. `StoreError` when a tenant key cannot be
        looked up."""
        settings = self._settings
        if not settings.api_key:
            return OPERATOR
        if is_admin_key(settings, key):
            return OPERATOR
        if key is None or len(key) > _MAX_PRESENTED or (key_id := _key_id(key)) is None:
            return None
        fields = await self._store.hgetall(Key.TENANT_KEY + key_id)
        matched = hmac.compare_digest(_digest(key), fields.get("digest", _NO_DIGEST))
        if not matched or fields.get("revoked_at") or "tenant" not in fields:
            return None
        return Principal(tenant=fields["tenant"], scopes=_scopes(fields.get("scopes", "")), key_id=key_id)

    async def create(self, tenant: str, scopes: Iterable[KeyScope], name: str) -> KeyCreated:
        key_id = secrets.token_hex(_ID_HEX // 2)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        now = time.time()
        kept = sorted(set(scopes))
        batch = self._store.batch()
        batch.hset(
            Key.TENANT_KEY + key_id,
            {
                "tenant": tenant,
                "scopes": ",".join(kept),
                "name": name,
                "digest": _digest(key),
                "created_at": now,
            },
        )
        batch.zadd(Key.TENANT_KEYS, {key_id: now})
        await batch.execute()
        return KeyCreated(key_id=key_id, tenant=tenant, scopes=kept, name=name, created_at=now, key=key)

    async def list(self) -> list[KeyInfo]:
        """The newest `MAX_LISTED` keys, newest first, revoked ones too (with when)."""
        members = await self._store.zrange(Key.TENANT_KEYS, descending=True, limit=MAX_LISTED)
        infos = [await self.read(key_id) for key_id, _ in members]
        return [info for info in infos if info is not None]

    async def read(self, key_id: str) -> KeyInfo | None:
        if len(key_id) != _ID_HEX:
            return None
        fields = await self._store.hgetall(Key.TENANT_KEY + key_id)
        if "tenant" not in fields:
            return None
        revoked = fields.get("revoked_at")
        return KeyInfo(
            key_id=key_id,
            tenant=fields["tenant"],
            scopes=sorted(_scopes(fields.get("scopes", ""))),
            name=fields.get("name", ""),
            created_at=float(fields.get("created_at", 0)),
            revoked_at=float(revoked) if revoked else None,
        )

    async def revoke(self, key_id: str) -> KeyInfo | None:
        """The key refuses every request from now on (the record stays, for the list); None: no such
        key. Revoking twice keeps the first time."""
        info = await self.read(key_id)
        if info is None or info.revoked_at is not None:
            return info
        now = time.time()
        await self._store.hset(Key.TENANT_KEY + key_id, {"revoked_at": now, "digest": ""})
        return info.model_copy(update={"revoked_at": now})


def parse_key_request(body: bytes) -> KeyRequest | ErrorBody:
    """`POST /api/keys`'s body (empty: `{}`), or the 422 error naming the field at fault."""
    try:
        return KeyRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "body"
        return ErrorBody(error="Invalid key request", detail=f"{where}: {error['msg']}")


def _scopes(text: str) -> frozenset[KeyScope]:
    return frozenset(scope for scope in KEY_SCOPES if scope in text.split(","))
