"""`/api/audio/sessions…`: list, info, close, and the WAV download (with HTTP Range)."""

import re

from aiohttp import hdrs, web

from voxbus.common.constants import Key, KeyScope, SessionStatus
from voxbus.common.http_bodies import (
    ErrorBody,
    SessionCloseResult,
    SessionInfo,
    SessionList,
    SessionListQuery,
)
from voxbus.common.listing import Page, PageError
from voxbus.common.principal import Principal
from voxbus.common.runtime.api_docs import Operation, PathParam, Reply, route
from voxbus.common.session_state import SessionState
from voxbus.common.state import SessionControl
from voxbus.common.tenant_keys import authorize
from voxbus.ingest.context import INGEST, IngestContext
from voxbus.ingest.finishing import CLOSED_OVER_HTTP, FinishTimeout, stop_detached, wait_finished
from voxbus.ingest.sessions import canonical_session_id, session_info

_ZERO_SUFFIX = re.compile(r"\s*bytes\s*=\s*-\s*0+\s*", re.IGNORECASE)


async def _caller(request: web.Request, scope: KeyScope) -> tuple[IngestContext, Principal] | web.Response:
    """The context and who the request acts for, or `authorize`'s refusal."""
    ctx = request.app[INGEST]
    principal = await authorize(ctx.keys, request, scope)
    return principal if isinstance(principal, web.Response) else (ctx, principal)


def _session_id(request: web.Request) -> tuple[str, web.Response | None]:
    given = request.match_info["session_id"]
    session_id = canonical_session_id(given)
    if session_id is None:
        return given, ErrorBody(error="Invalid session id", session_id=given).response(422)
    return session_id, None


async def list_sessions(request: web.Request) -> web.Response:
    caller = await _caller(request, "read")
    if isinstance(caller, web.Response):
        return caller
    ctx, principal = caller
    query = request.query
    try:
        page = Page.from_query(query)
    except PageError as exc:
        return exc.body.response(422)
    status = query.get("status")
    if status is not None and status not in {s.value for s in SessionStatus}:
        return ErrorBody(error="Invalid status", valid_values=[s.value for s in SessionStatus]).response(422)
    items, next_cursor = await ctx.registry.list(
        tenant=principal.tenant, user_id=query.get("user_id"), status=status, page=page
    )
    return SessionList(
        sessions=items, count=len(items), next_cursor=None if next_cursor is None else repr(next_cursor)
    ).response()


async def _session(
    request: web.Request, scope: KeyScope = "read"
) -> tuple[IngestContext, SessionState] | web.Response:
    """The context and record of the session a request names, or the error response. Another
    tenant's session is not found, as one that never was."""
    caller = await _caller(request, scope)
    if isinstance(caller, web.Response):
        return caller
    ctx, principal = caller
    session_id, invalid = _session_id(request)
    if invalid:
        return invalid
    state = await ctx.registry.read(session_id)
    if state is None or not principal.owns(state.tenant):
        return ErrorBody(error="Session not found", session_id=session_id).response(404)
    return ctx, state


async def get_session(request: web.Request) -> web.Response:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    _, state = found
    return session_info(state).response()


async def close_session(request: web.Request) -> web.Response:
    found = await _session(request, "stream")
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
        return ErrorBody(error=str(exc), session_id=session_id).response(504)
    return SessionCloseResult(session_id=session_id, final_info=info).response()


async def download(request: web.Request) -> web.StreamResponse:
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    ctx, state = found
    name = state.file_path if state.file_path is not None else f"{state.session_id}.wav"
    return _wav_file(request, ctx, state.session_id, name)


async def download_segment(request: web.Request) -> web.StreamResponse:
    """Segment `index` (0, 1, …: the order of the info's `segments`), once the files are complete."""
    found = await _session(request)
    if isinstance(found, web.Response):
        return found
    ctx, state = found
    given = request.match_info["index"]
    index = int(given) if given.isascii() and given.isdecimal() and len(given) <= 6 else -1
    if not 0 <= index < len(state.segments):
        return ErrorBody(
            error="No such segment", session_id=state.session_id, segments=len(state.segments)
        ).response(404)
    return _wav_file(request, ctx, state.session_id, state.segments[index])


def _wav_file(request: web.Request, ctx: IngestContext, session_id: str, name: str) -> web.StreamResponse:
    """The file `name` (as the session record has it) under the audio storage path, never outside."""
    storage = ctx.settings.audio_storage_path.resolve()
    path = (storage / name).resolve()
    if not path.is_relative_to(storage) or not path.is_file():
        return ErrorBody(error="No audio recorded yet", session_id=session_id).response(404)
    if _ZERO_SUFFIX.fullmatch(request.headers.get(hdrs.RANGE, "")):
        # "the last 0 bytes" selects nothing, so it is unsatisfiable (RFC 9110 14.1.1); aiohttp
        # would serve the whole file as a 206
        size = path.stat().st_size
        response = ErrorBody(error="Range not satisfiable", session_id=session_id, size=size).response(416)
        response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        return response
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


_TAG = "sessions"
SESSION_ID = PathParam("The session's id: a UUID, in any letter case.", {"type": "string", "format": "uuid"})
_SESSION_ID = {"session_id": SESSION_ID}
_UNAUTHORIZED = Reply(description="Invalid API key (with `API_KEY` set).", body=ErrorBody)
_READ_SCOPE = Reply(description="A tenant key without the `read` scope.", body=ErrorBody)
_STREAM_SCOPE = Reply(description="A tenant key without the `stream` scope.", body=ErrorBody)
_STORE_DOWN = Reply(description="The state store cannot be reached.", body=ErrorBody)
_INVALID_ID = Reply(description="Not a session id.", body=ErrorBody)
_NOT_FOUND = Reply(description="No such session.", body=ErrorBody)
_WAV = {"type": "string", "contentMediaType": "audio/wav"}
_WAV_REPLIES = {
    200: Reply(description="The WAV file.", media_type="audio/wav", schema=_WAV),
    206: Reply(description="The range asked for.", media_type="audio/wav", schema=_WAV),
    401: _UNAUTHORIZED,
    403: _READ_SCOPE,
    503: _STORE_DOWN,
    416: Reply(description="Range not satisfiable.", body=ErrorBody),
    422: _INVALID_ID,
}


def add_routes(app: web.Application) -> None:
    route(
        app,
        "GET",
        "/api/audio/sessions",
        list_sessions,
        Operation(
            summary="List sessions, newest first",
            tag=_TAG,
            query=SessionListQuery,
            api_key=True,
            replies={
                200: Reply(description="A page of sessions.", body=SessionList),
                401: _UNAUTHORIZED,
                503: _STORE_DOWN,
                403: _READ_SCOPE,
                422: Reply(description="An invalid `limit`, `cursor` or `status`.", body=ErrorBody),
            },
        ),
    )
    route(
        app,
        "GET",
        "/api/audio/sessions/{session_id}",
        get_session,
        Operation(
            summary="A session's info",
            tag=_TAG,
            path_params=_SESSION_ID,
            api_key=True,
            replies={
                200: Reply(description="The session.", body=SessionInfo),
                401: _UNAUTHORIZED,
                503: _STORE_DOWN,
                403: _READ_SCOPE,
                404: _NOT_FOUND,
                422: _INVALID_ID,
            },
        ),
    )
    route(
        app,
        "POST",
        "/api/audio/sessions/{session_id}/close",
        close_session,
        Operation(
            summary="Close a session and wait for its recording",
            description="Reaches the pod holding the session's socket, which closes it as its "
            "client's `close_session` would; with no socket anywhere, the session is stopped here. "
            "Answers once the recording is complete. A session already ended answers at once.",
            tag=_TAG,
            path_params=_SESSION_ID,
            api_key=True,
            replies={
                200: Reply(description="Closed; its recording is complete.", body=SessionCloseResult),
                401: _UNAUTHORIZED,
                503: _STORE_DOWN,
                403: _STREAM_SCOPE,
                404: _NOT_FOUND,
                422: _INVALID_ID,
                504: Reply(
                    description="The recording was not complete within `CLOSE_TIMEOUT_SECONDS`.",
                    body=ErrorBody,
                ),
            },
        ),
    )
    route(
        app,
        "GET",
        "/api/audio/sessions/{session_id}/segments/{index}",
        download_segment,
        Operation(
            summary="Download one of a session's 30-second segments",
            description="`index` counts from 0 in the order of the info's `segments` (listed once "
            "the session's files are complete). Takes HTTP `Range` requests (206).",
            tag=_TAG,
            path_params={
                **_SESSION_ID,
                "index": PathParam(
                    "The segment's place in `segments`, from 0.", {"type": "integer", "minimum": 0}
                ),
            },
            api_key=True,
            replies={
                **_WAV_REPLIES,
                404: Reply(
                    description="No such session or segment (`segments`: how many there are), or no "
                    "file yet.",
                    body=ErrorBody,
                ),
                422: _INVALID_ID,
            },
        ),
    )
    route(
        app,
        "GET",
        "/api/audio/sessions/{session_id}/audio",
        download,
        Operation(
            summary="Download a session's WAV",
            description="The whole session's WAV as recorded so far (complete once the session "
            "is `completed`). Takes HTTP `Range` requests (206).",
            tag=_TAG,
            path_params=_SESSION_ID,
            api_key=True,
            replies={
                **_WAV_REPLIES,
                404: Reply(description="No such session, or no audio recorded yet.", body=ErrorBody),
                422: _INVALID_ID,
            },
        ),
    )
