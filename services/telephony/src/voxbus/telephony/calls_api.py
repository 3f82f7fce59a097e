"""`/api/calls…`: call records (docs/api.md), and a barge-in for a call in progress."""

from aiohttp import web

from voxbus.common.api_keys import authorized
from voxbus.common.listing import Page, PageError
from voxbus.telephony.context import TELEPHONY

PROVIDERS = ("vonage", "exotel", "twilio")
_ID_LIMIT = 128


def _refused(request: web.Request) -> web.Response | None:
    if not authorized(request.app[TELEPHONY].settings, request):
        return web.json_response({"error": "Invalid API key"}, status=401)
    return None


async def list_calls(request: web.Request) -> web.Response:
    if refused := _refused(request):
        return refused
    query = request.query
    try:
        page = Page.from_query(query)
    except PageError as exc:
        return web.json_response(exc.body, status=422)
    provider = query.get("provider")
    if provider is not None and provider not in PROVIDERS:
        return web.json_response({"error": "Invalid provider", "valid_values": list(PROVIDERS)}, status=422)
    status = query.get("status")
    calls, next_cursor = await request.app[TELEPHONY].calls.list(
        provider=provider, status=status[:64] if status else None, page=page
    )
    return web.json_response(
        {
            "calls": calls,
            "count": len(calls),
            "next_cursor": None if next_cursor is None else repr(next_cursor),
        }
    )


async def get_call(request: web.Request) -> web.Response:
    if refused := _refused(request):
        return refused
    call_id = request.match_info["call_id"]
    call = await request.app[TELEPHONY].calls.read(call_id) if len(call_id) <= _ID_LIMIT else None
    if call is None:
        return web.json_response({"error": "Call not found", "call_id": call_id[:_ID_LIMIT]}, status=404)
    return web.json_response(call)


async def clear_call(request: web.Request) -> web.Response:
    """Barge-in: what the call's socket has queued for the caller is dropped (and the carrier's
    buffer cleared). 409 when the call has no live media socket."""
    if refused := _refused(request):
        return refused
    ctx = request.app[TELEPHONY]
    call_id = request.match_info["call_id"]
    call = await ctx.calls.read(call_id) if len(call_id) <= _ID_LIMIT else None
    if call is None:
        return web.json_response({"error": "Call not found", "call_id": call_id[:_ID_LIMIT]}, status=404)
    if call["session_id"] is None or not await ctx.prompts.clear(call["session_id"]):
        return web.json_response({"error": "The call has no media socket", "call_id": call_id}, status=409)
    return web.json_response({"success": True, "call_id": call_id})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_post("/api/calls/{call_id}/clear", clear_call)
