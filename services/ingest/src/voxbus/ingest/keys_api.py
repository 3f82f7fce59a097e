"""`/api/keys…`: tenant keys (docs/security.md, Tenants), created, listed and revoked with an admin
key (`API_KEY`). `voxbus keys` is their command line."""

from aiohttp import web

from voxbus.common.http_bodies import ErrorBody, KeyCreated, KeyInfo, KeyList, KeyRequest
from voxbus.common.runtime.api_docs import Operation, PathParam, Reply, route
from voxbus.common.tenant_keys import authorize
from voxbus.ingest.context import INGEST

_MAX_BODY = 4096


async def _refused(request: web.Request) -> web.Response | None:
    """409 on an open server (no `API_KEY`), 401 without a valid key, 403 for a tenant key, 503
    without the state store."""
    ctx = request.app[INGEST]
    if not ctx.settings.api_key:
        return ErrorBody(
            error="Tenant keys need API_KEY set: without it the server is open to everyone"
        ).response(409)
    principal = await authorize(ctx.keys, request, "read")
    if isinstance(principal, web.Response):
        return principal
    if not principal.is_operator:
        return ErrorBody(error="Only an admin key (API_KEY) manages keys").response(403)
    return None


async def _body(request: web.Request) -> bytes | None:
    """The whole body, or None when it is over `_MAX_BODY` bytes."""
    if (request.content_length or 0) > _MAX_BODY:
        return None
    body = b""
    while len(body) <= _MAX_BODY and (chunk := await request.content.read(_MAX_BODY + 1 - len(body))):
        body += chunk
    return body if len(body) <= _MAX_BODY else None


async def list_keys(request: web.Request) -> web.Response:
    if refused := await _refused(request):
        return refused
    keys = await request.app[INGEST].keys.list()
    return KeyList(keys=keys, count=len(keys)).response()


async def create_key(request: web.Request) -> web.Response:
    if refused := await _refused(request):
        return refused
    body = await _body(request)
    if body is None:
        return ErrorBody(error="Request body too large", detail=f"at most {_MAX_BODY} bytes").response(413)
    wanted = KeyRequest.parse(body)
    if isinstance(wanted, ErrorBody):
        return wanted.response(422)
    created = await request.app[INGEST].keys.create(wanted.tenant, wanted.scopes, wanted.name)
    return created.response(201)


async def revoke_key(request: web.Request) -> web.Response:
    if refused := await _refused(request):
        return refused
    key_id = request.match_info["key_id"]
    revoked = await request.app[INGEST].keys.revoke(key_id)
    if revoked is None:
        return ErrorBody(error="Key not found", detail=key_id[:64]).response(404)
    return revoked.response()


_TAG = "keys"
_REFUSALS = {
    401: Reply(description="No valid API key.", body=ErrorBody),
    403: Reply(description="A tenant key: only an admin key (`API_KEY`) manages keys.", body=ErrorBody),
    409: Reply(
        description="`API_KEY` is not set: the server is open, tenant keys mean nothing.", body=ErrorBody
    ),
}


def add_routes(app: web.Application) -> None:
    route(
        app,
        "GET",
        "/api/keys",
        list_keys,
        Operation(
            summary="List tenant keys, newest first (never the keys themselves)",
            tag=_TAG,
            api_key=True,
            replies={200: Reply(description="The keys, revoked ones too.", body=KeyList), **_REFUSALS},
        ),
    )
    route(
        app,
        "POST",
        "/api/keys",
        create_key,
        Operation(
            summary="Create a tenant key",
            description="The key is in the answer, once: voxbus keeps only its SHA-256. It works at "
            "once on every pod.",
            tag=_TAG,
            body=KeyRequest,
            api_key=True,
            replies={
                201: Reply(description="The new key.", body=KeyCreated),
                **_REFUSALS,
                413: Reply(description="A body over 4 KiB.", body=ErrorBody),
                422: Reply(description="An invalid tenant, scope or name.", body=ErrorBody),
            },
        ),
    )
    route(
        app,
        "POST",
        "/api/keys/{key_id}/revoke",
        revoke_key,
        Operation(
            summary="Revoke a tenant key",
            description="Every request with it is refused from now on, on every pod. Sockets it "
            "opened keep streaming until they close; they cannot resume.",
            tag=_TAG,
            path_params={"key_id": PathParam("The key's id, as listed.", {"type": "string"})},
            api_key=True,
            replies={
                200: Reply(description="Revoked (`revoked_at` says when).", body=KeyInfo),
                **_REFUSALS,
                404: Reply(description="No such key.", body=ErrorBody),
            },
        ),
    )
