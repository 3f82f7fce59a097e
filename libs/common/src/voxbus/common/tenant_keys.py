"""Keys (docs/security.md, Tenants): the admin `API_KEY`s from the settings, and tenant keys kept
hashed in the state store, looked up at each request, so one made or revoked on any pod counts
everywhere at once, with no restart.

With no `API_KEY` set the server is open and everyone is the operator. Otherwise an admin key
makes the request the operator's; a tenant key `vbk_<key id>_<secret>` makes it that tenant's,
with the key's scopes; anything else is refused. Every comparison is of SHA-256 digests, in
constant time, whatever matched. Keys are never logged.
"""

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Self

from aiohttp import web

from voxbus.common.constants import KEY_SCOPES, Key, KeyScope
from voxbus.common.http_bodies import ErrorBody, KeyCreated, KeyInfo
from voxbus.common.principal import OPERATOR, Principal, presented_key
from voxbus.common.settings import Settings
from voxbus.common.store.base import StateStore, StoreError

log = logging.getLogger(__name__)

PREFIX: Final = "vbk"
MAX_LISTED: Final = 1000
_ID_HEX: Final = 12  # 48 random bits: ids are public, the secret after them is what counts
_SECRET_BYTES: Final = 32
_MAX_PRESENTED: Final = 200  # longer than any key: refused without a lookup
# compared against when the id names no key, so a miss costs what a mismatch does
_NO_DIGEST: Final = hashlib.sha256(b"no such key").hexdigest()


def _digest(key: str) -> str:
    # keys are 256 random bits: a fast hash is as strong as a slow one against guessing
    return hashlib.sha256(key.encode()).hexdigest()


def _key_id(key: str) -> str | None:
    prefix, _, rest = key.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != PREFIX or len(key_id) != _ID_HEX or not secret:
        return None
    return key_id if all(c in "0123456789abcdef" for c in key_id) else None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    """A tenant key as the store keeps it (`Key.TENANT_KEY` + id): never the key, its SHA-256."""

    key_id: str
    tenant: str
    scopes: frozenset[KeyScope]
    name: str
    digest: str  # "" once revoked
    created_at: float
    revoked_at: float | None = None

    def to_hash(self) -> dict[str, str]:
        fields = {
            "tenant": self.tenant,
            "scopes": ",".join(sorted(self.scopes)),
            "name": self.name,
            "digest": self.digest,
            "created_at": repr(self.created_at),
        }
        return fields if self.revoked_at is None else {**fields, "revoked_at": repr(self.revoked_at)}

    @classmethod
    def from_hash(cls, key_id: str, fields: Mapping[str, str]) -> Self | None:
        """None for a hash that holds no key."""
        if "tenant" not in fields:
            return None
        revoked = fields.get("revoked_at")
        named = fields.get("scopes", "").split(",")
        return cls(
            key_id=key_id,
            tenant=fields["tenant"],
            scopes=frozenset(scope for scope in KEY_SCOPES if scope in named),
            name=fields.get("name", ""),
            digest=fields.get("digest", ""),
            created_at=float(fields.get("created_at", 0)),
            revoked_at=float(revoked) if revoked else None,
        )

    def info(self) -> KeyInfo:
        return KeyInfo(
            key_id=self.key_id,
            tenant=self.tenant,
            scopes=sorted(self.scopes),
            name=self.name,
            created_at=self.created_at,
            revoked_at=self.revoked_at,
        )


class TenantKeys:
    """Who a key makes its caller, and the tenant keys in the state store (`Key.TENANT_KEYS`
    lists their ids, by creation time)."""

    def __init__(self, settings: Settings, store: StateStore) -> None:
        self._settings, self._store = settings, store
        self._admin_digests = [_digest(key) for key in settings.api_key]

    async def principal(self, key: str | None) -> Principal | None:
        """Who `key` makes the caller; None: refused. `StoreError` when a tenant key cannot be
        looked up."""
        if not self._admin_digests:
            return OPERATOR
        digest = _digest(key or "")
        # compared with every admin key: the time does not tell which one (or whether any) matched
        if any([hmac.compare_digest(digest, admin) for admin in self._admin_digests]):
            return OPERATOR
        if key is None or len(key) > _MAX_PRESENTED or (key_id := _key_id(key)) is None:
            return None
        record = await self._read(key_id)
        if not hmac.compare_digest(digest, record.digest if record and record.digest else _NO_DIGEST):
            return None
        assert record is not None  # a digest matched
        return Principal(tenant=record.tenant, scopes=record.scopes, key_id=key_id)

    async def still_valid(self, principal: Principal) -> bool:
        """Whether the tenant key that made `principal` is not revoked (the operator always is):
        a socket asks at each session it opens or resumes. `StoreError` if it cannot be read."""
        if principal.key_id is None:
            return True
        record = await self._read(principal.key_id)
        return record is not None and record.revoked_at is None

    async def create(self, tenant: str, scopes: Iterable[KeyScope], name: str) -> KeyCreated:
        key_id = secrets.token_hex(_ID_HEX // 2)
        key = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        record = KeyRecord(
            key_id=key_id,
            tenant=tenant,
            scopes=frozenset(scopes),
            name=name,
            digest=_digest(key),
            created_at=time.time(),
        )
        batch = self._store.batch()
        batch.hset(Key.TENANT_KEY + key_id, record.to_hash())
        batch.zadd(Key.TENANT_KEYS, {key_id: record.created_at})
        await batch.execute()
        log.info("tenant key created", extra={"key_id": key_id, "tenant": tenant})
        return KeyCreated(**record.info().model_dump(), key=key)

    async def list(self) -> list[KeyInfo]:
        """The newest `MAX_LISTED` keys, newest first, revoked ones too (with when)."""
        members = await self._store.zrange(Key.TENANT_KEYS, descending=True, limit=MAX_LISTED)
        batch = self._store.batch()
        for key_id, _ in members:
            batch.hgetall(Key.TENANT_KEY + key_id)
        hashes = await batch.execute() if members else []
        records = [KeyRecord.from_hash(key_id, h) for (key_id, _), h in zip(members, hashes, strict=True)]
        return [record.info() for record in records if record is not None]

    async def revoke(self, key_id: str) -> KeyInfo | None:
        """The key refuses every request from now on (its entry stays, for the list); None: no
        such key. Revoking twice keeps the first time."""
        record = await self._read(key_id) if len(key_id) == _ID_HEX else None
        if record is None or record.revoked_at is not None:
            return None if record is None else record.info()
        now = time.time()
        await self._store.hset(Key.TENANT_KEY + key_id, {"revoked_at": repr(now), "digest": ""})
        log.info("tenant key revoked", extra={"key_id": key_id, "tenant": record.tenant})
        return KeyInfo(**{**record.info().model_dump(), "revoked_at": now})

    async def any_made(self) -> bool:
        return bool(await self._store.zrange(Key.TENANT_KEYS, limit=1))

    async def _read(self, key_id: str) -> KeyRecord | None:
        return KeyRecord.from_hash(key_id, await self._store.hgetall(Key.TENANT_KEY + key_id))


async def authorize(keys: TenantKeys, request: web.Request, scope: KeyScope) -> Principal | web.Response:
    """Who an HTTP request acts for, or the answer refusing it: 401 without a valid key, 403 for
    a tenant key without `scope`, 503 when the state store cannot be asked."""
    try:
        principal = await keys.principal(presented_key(request))
    except StoreError as exc:
        log.warning("a key could not be looked up", extra={"reason": str(exc)})
        response = ErrorBody(error="State store unavailable").response(503)
        response.headers["Retry-After"] = "1"
        return response
    if principal is None:
        return ErrorBody(error="Invalid API key").response(401)
    if not principal.may(scope):
        return ErrorBody(error="API key lacks scope", scope=scope).response(403)
    return principal
