"""`/api/audio/sessions…`: list, info, close, and the WAV download (with HTTP Range)."""

import re

from aiohttp import hdrs, web

from voxbus.common.api_keys import authorized
from voxbus.common.constants import Key, SessionStatus
from voxbus.common.listing import Page, PageError
from voxbus.common.session_state import SessionState
from voxbus.common.state import SessionControl
from voxbus.ingest.context import INGEST, IngestContext
from voxbus.ingest.finishing import CLOSED_OVER_HTTP, FinishTimeout, stop_detached, wait_finished
from voxbus.ingest.sessions import canonical_session_id, public_info

_ZERO_SUFFIX = re.compile(r"\s*bytes\s*=\s*-\s*0+\s*", re.IGNORECASE)


def _error(status: int, body: dict[str, object]) -> web.Response:
    return web.json_response(body, status=status)


def _checked(request: web.Request) -> tuple[IngestContext, web.Response | None]:
    ctx = request.app[INGEST]
    if not authorized(ctx.settings, request):
        return ctx, _error(401, {"error": "Invalid API key"})
    return ctx, None


def _session_id(request: web.Request) -> tuple[str, web.Response | None]:
    given = request.match_info["session_id"]
    session_id = canonical_session_id(given)
    if session_id is None:
        return given, _error(422, {"error": "Invalid session id", "session_id": given})
    return session_id, None


async def list_sessions(request: web.Request) -> web.Response:
    ctx, refused = _checked(request)
    if refused:
        return refused
    query = request.query
    try:
        page = Page.from_query(query)
    except PageError as exc:
        return _error(422, exc.body)
    status = query.get("status")
    if status is not None and status not in {s.value for s in SessionStatus}:
        return _error(422, {"error": "Invalid status", "valid_values": [s.value for s in SessionStatus]})
    items, next_cursor = await ctx.registry.list(user_id=query.get("user_id"), status=status, page=page)
    return web.json_response(
        {
            "sessions": items,
            "count": len(items),
            "next_cursor": None if next_cursor is None else repr(next_cursor),
        }
    )


async def _session(request: web.Request) -> tuple[IngestContext, SessionState] | web.Response:
    """The context and record of the session a request names, or the error response."""
    ctx, refused = _checked(request)
    session_id, invalid = _session_id(request)
    if refused or invalid:
        return refused or invalid  # type: ignore[return-value]
    state = await ctx.registry.read(session_id)
    if state is None:
        return _error(404, {"error": "Session not found", "session_id": session_id})
    return ctx, state


async def get_session(request: web.Request) -> web.Response:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    _, state = found
    return web.json_response(public_info(state))


async def close_session(request: web.Request) -> web.Response:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    ctx, state = found
    session_id, active = state.session_id, state.status == SessionStatus.ACTIVE
    # the pod holding a socket for it closes it; with no socket anywhere, we stop it here
    if active and not await ctx.store.publish(Key.SESSION_CONTROL + session_id, SessionControl.CLOSE):
        await stop_detached(ctx, session_id, CLOSED_OVER_HTTP)
    try:
        info = await wait_finished(ctx, session_id)
    except FinishTimeout as exc:
        return _error(504, {"error": str(exc), "session_id": session_id})
    return web.json_response({"success": True, "session_id": session_id, "final_info": info})


async def download(request: web.Request) -> web.StreamResponse:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    ctx, state = found
    session_id = state.session_id
    name = state.file_path if state.file_path is not None else f"{session_id}.wav"
    path = ctx.settings.audio_storage_path / name
    if not path.is_file():
        return _error(404, {"error": "No audio recorded yet", "session_id": session_id})
    if _ZERO_SUFFIX.fullmatch(request.headers.get(hdrs.RANGE, "")):
        # "the last 0 bytes" selects nothing, so it is unsatisfiable (RFC 9110 14.1.1); aiohttp
        # would serve the whole file as a 206
        size = path.stat().st_size
        response = _error(416, {"error": "Range not satisfiable", "session_id": session_id, "size": size})
        response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        return response
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/audio/sessions", list_sessions)
    app.router.add_get("/api/audio/sessions/{session_id}", get_session)
    app.router.add_post("/api/audio/sessions/{session_id}/close", close_session)
    app.router.add_get("/api/audio/sessions/{session_id}/audio", download)
