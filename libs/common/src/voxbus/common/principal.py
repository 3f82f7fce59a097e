"""Who a request acts for (docs/security.md, Tenants): the operator, or one tenant with the
scopes of its key; and where a request presents its key."""

from dataclasses import dataclass
from typing import Final

from aiohttp import web

from voxbus.common.constants import KEY_SCOPES, KeyScope


@dataclass(frozen=True, slots=True)
class Principal:
    """The operator (`tenant` None: an admin key, or any caller of an open server) or one tenant."""

    tenant: str | None
    scopes: frozenset[KeyScope]
    key_id: str | None = None  # the tenant key's id

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
    """`Authorization: Bearer`, `X-API-Key`, `?api_key=` or `?token=`: the first one present."""
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return request.headers.get("X-API-Key") or request.query.get("api_key") or request.query.get("token")
