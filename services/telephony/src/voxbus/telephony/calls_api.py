"""`/api/calls…`: call records (docs/api.md), and a barge-in for a call in progress."""

from aiohttp import web

from voxbus.common.constants import KeyScope
from voxbus.common.http_bodies import CallCleared, CallList, CallListQuery, CallRecord, ErrorBody
from voxbus.common.listing import Page, PageError
from voxbus.common.runtime.api_docs import Operation, PathParam, Reply, route
from voxbus.common.tenant_keys import authorize
from voxbus.telephony.context import TELEPHONY

PROVIDERS = ("vonage", "exotel", "twilio")
_ID_LIMIT = 128


async def _operator(request: web.Request, scope: KeyScope) -> bool | web.Response:
    """Whether the request is the operator's (a carrier's calls are: a tenant key sees none of
    them), or `authorize`'s refusal."""
    principal = await authorize(request.app[TELEPHONY].keys, request, scope)
    return principal if isinstance(principal, web.Response) else principal.is_operator


def _not_found(call_id: str) -> web.Response:
    return ErrorBody(error="Call not found", call_id=call_id[:_ID_LIMIT]).response(404)


async def list_calls(request: web.Request) -> web.Response:
    operator = await _operator(request, "read")
    if isinstance(operator, web.Response):
        return operator
    query = request.query
    try:
        page = Page.from_query(query)
    except PageError as exc:
        return exc.body.response(422)
    provider = query.get("provider")
    if provider is not None and provider not in PROVIDERS:
        return ErrorBody(error="Invalid provider", valid_values=list(PROVIDERS)).response(422)
    status = query.get("status")
    if not operator:
        return CallList(calls=[], count=0, next_cursor=None).response()
    calls, next_cursor = await request.app[TELEPHONY].calls.list(
        provider=provider, status=status[:64] if status else None, page=page
    )
    return CallList(
        calls=calls, count=len(calls), next_cursor=None if next_cursor is None else repr(next_cursor)
    ).response()


async def get_call(request: web.Request) -> web.Response:
    operator = await _operator(request, "read")
    if isinstance(operator, web.Response):
        return operator
    call_id = request.match_info["call_id"]
    found = operator and len(call_id) <= _ID_LIMIT
    call = await request.app[TELEPHONY].calls.read(call_id) if found else None
    if call is None:
        return _not_found(call_id)
    return call.response()


async def clear_call(request: web.Request) -> web.Response:
    """Barge-in: what the call's socket has queued for the caller is dropped (and the carrier's
    buffer cleared). 409 when the call has no live media socket."""
    operator = await _operator(request, "stream")
    if isinstance(operator, web.Response):
        return operator
    ctx = request.app[TELEPHONY]
    call_id = request.match_info["call_id"]
    call = await ctx.calls.read(call_id) if operator and len(call_id) <= _ID_LIMIT else None
    if call is None:
        return _not_found(call_id)
    if call.session_id is None or not await ctx.prompts.clear(call.session_id):
        return ErrorBody(error="The call has no media socket", call_id=call_id).response(409)
    return CallCleared(call_id=call_id).response()


_TAG = "calls"
_CALL_ID = {"call_id": PathParam("The carrier's id of the call.", {"type": "string", "minLength": 1})}
_UNAUTHORIZED = Reply(description="Invalid API key (with `API_KEY` set).", body=ErrorBody)
_FORBIDDEN = Reply(description="A tenant key without the scope (`read`; `stream` to clear).", body=ErrorBody)
_STORE_DOWN = Reply(description="The state store cannot be reached.", body=ErrorBody)
_NOT_FOUND = Reply(description="No such call (a tenant key sees no carrier's calls).", body=ErrorBody)


def add_routes(app: web.Application) -> None:
    route(
        app,
        "GET",
        "/api/calls",
        list_calls,
        Operation(
            summary="List calls, newest first",
            tag=_TAG,
            query=CallListQuery,
            api_key=True,
            replies={
                200: Reply(description="A page of calls.", body=CallList),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                503: _STORE_DOWN,
                422: Reply(description="An invalid `limit`, `cursor` or `provider`.", body=ErrorBody),
            },
        ),
    )
    route(
        app,
        "GET",
        "/api/calls/{call_id}",
        get_call,
        Operation(
            summary="A call's record",
            tag=_TAG,
            path_params=_CALL_ID,
            api_key=True,
            replies={
                200: Reply(description="The call.", body=CallRecord),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                503: _STORE_DOWN,
                404: _NOT_FOUND,
            },
        ),
    )
    route(
        app,
        "POST",
        "/api/calls/{call_id}/clear",
        clear_call,
        Operation(
            summary="Barge-in: drop what the caller has not heard yet",
            tag=_TAG,
            path_params=_CALL_ID,
            api_key=True,
            replies={
                200: Reply(description="Dropped (and the carrier's buffer cleared).", body=CallCleared),
                401: _UNAUTHORIZED,
                403: _FORBIDDEN,
                503: _STORE_DOWN,
                404: _NOT_FOUND,
                409: Reply(description="The call has no live media socket.", body=ErrorBody),
            },
        ),
    )
