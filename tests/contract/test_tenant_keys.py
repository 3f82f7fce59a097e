"""Tenant keys in either state store (in process and real Redis): what a presented string makes
its caller, what the store keeps of a key, and revocation."""

from voxbus.common.principal import OPERATOR
from voxbus.common.settings import Settings
from voxbus.common.store.base import StateStore
from voxbus.common.tenant_keys import TenantKeys

ADMIN = "the-operators-admin-key"


async def test_a_key_makes_its_caller_the_tenant_with_its_scopes_and_nothing_else_does(
    store: StateStore,
) -> None:
    keys = TenantKeys(Settings(api_key=(ADMIN,)), store)
    created = await keys.create("acme", ["read"], "dashboard")
    principal = await keys.principal(created.key)
    assert principal is not None
    assert (principal.tenant, principal.scopes, principal.key_id) == ("acme", {"read"}, created.key_id)
    assert (principal.may("read"), principal.may("stream")) == (True, False)
    assert principal.owns("acme") and not principal.owns("") and not principal.owns("globex")
    assert await keys.principal(ADMIN) == OPERATOR
    prefix, key_id, secret = created.key.split("_", 2)
    for refused in (
        None,
        "",
        "wrong",
        f"{prefix}_{key_id}_{secret[:-1]}x",  # the secret's last character changed
        f"{prefix}_{'0' * 12}_{secret}",  # no such id
        f"{prefix}_{key_id}_{secret}" + "x" * 200,  # longer than any key
        f"vbx_{key_id}_{secret}",
        created.key_id,
    ):
        assert await keys.principal(refused) is None, refused


async def test_the_store_keeps_the_keys_digest_never_the_key(store: StateStore) -> None:
    keys = TenantKeys(Settings(api_key=(ADMIN,)), store)
    created = await keys.create("acme", ["stream", "read", "stream"], "")
    stored = await store.hgetall(f"voxbus:tenant-key:{created.key_id}")
    assert created.key not in str(stored) and created.key.split("_", 2)[2] not in str(stored)
    assert (stored["tenant"], stored["scopes"], len(stored["digest"])) == ("acme", "read,stream", 64)


async def test_revoking_refuses_the_key_at_once_and_lists_when(store: StateStore) -> None:
    keys = TenantKeys(Settings(api_key=(ADMIN,)), store)
    first, second = await keys.create("acme", ["stream"], "v1"), await keys.create("acme", ["stream"], "v2")
    revoked = await keys.revoke(first.key_id)
    assert revoked is not None and revoked.revoked_at is not None
    assert await keys.principal(first.key) is None
    assert await keys.principal(second.key) is not None
    again = await keys.revoke(first.key_id)
    assert again is not None and again.revoked_at == revoked.revoked_at  # the first time stays
    ours = {first.key_id, second.key_id}  # Redis's database is shared with other tests
    listed = [(k.key_id, k.revoked_at is None) for k in await keys.list() if k.key_id in ours]
    assert listed == [(second.key_id, True), (first.key_id, False)]
    assert await keys.revoke("000000000000") is None


async def test_an_open_server_makes_everyone_the_operator(store: StateStore) -> None:
    keys = TenantKeys(Settings(), store)
    assert await keys.principal(None) == OPERATOR
    assert await keys.principal("anything") == OPERATOR
