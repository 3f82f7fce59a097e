"""The HTTP API's reference, served by every process for the routes it serves: `/openapi.json`
(OpenAPI 3.1), `/docs` (Swagger UI) and `/redoc` (Redoc), their scripts from the
`openapi-ui-bundles` package (no CDN: the pages work with no internet).

A service adds each route with `route(app, method, path, handler, Operation(…))`: the operation
names the pydantic models of its query, body and replies (`http_bodies`, the carriers' webhook
models), the same ones the handler reads and answers with, and the document is generated from
them. A route added any other way is missing from the document, which the tests refuse.
"""

import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from aiohttp import web
from openapi_ui_bundles import redoc, swagger_ui
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from voxbus.common import __version__

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Method = Literal["GET", "POST"]

REF_PREFIX: Final = "#/components/schemas/"
API_KEY_SCHEMES: Final = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "`Authorization: Bearer <key>`"},
    "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "apiKeyQuery": {"type": "apiKey", "in": "query", "name": "api_key"},
    "token": {"type": "apiKey", "in": "query", "name": "token", "description": "For browsers' WebSockets."},
}
SWAGGER_ASSETS: Final = "/docs/assets"
REDOC_ASSETS: Final = "/redoc/assets"
_SWAGGER_FILES: Final = ("swagger-ui.css", "swagger-ui-bundle.js")  # what the page loads, no more
_REDOC_SCRIPT: Final = "redoc.standalone.js"
_REDOC_LOGO_FILE: Final = "logo-mini.svg"
# Redoc's footer loads its logo from Redocly's CDN; the package ships the same file beside it
_REDOC_LOGO: Final = (
    b"https://cdn.redoc.ly/redoc/logo-mini.svg",
    f".{REDOC_ASSETS}/{_REDOC_LOGO_FILE}".encode(),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """One status an operation answers with, and its body: a model, or a schema for a body that
    is no JSON object (TwiML, a WAV file, a page); neither for none."""

    description: str
    body: type[BaseModel] | None = None
    media_type: str = "application/json"
    schema: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class PathParam:
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Operation:
    summary: str
    tag: str
    replies: Mapping[int, Reply]
    description: str = ""
    query: type[BaseModel] | None = None
    path_params: Mapping[str, PathParam] = field(default_factory=dict)
    body: type[BaseModel] | None = None
    body_types: tuple[str, ...] = ("application/json",)
    api_key: bool = False  # needs one of the API keys when API_KEY is set


OPERATIONS = web.AppKey("api_operations", dict[tuple[str, str], Operation])
# the document, built at the first request (the routes are fixed once the app runs)
_DOCUMENT = web.AppKey("openapi_document", list[dict[str, Any]])


def route(
    app: web.Application,
    method: Method,
    path: str,
    handler: Handler,
    operation: Operation,
    *,
    head: bool = True,
) -> None:
    """Serve `handler` at `method path`, documented as `operation`. A GET answers HEAD too,
    unless `head` is False (a webhook whose GET records something: HEAD gets 405)."""
    if method == "GET":
        app.router.add_get(path, handler, allow_head=head)
    else:
        app.router.add_route(method, path, handler)
    app.setdefault(OPERATIONS, {})[(method, path)] = operation


def add_docs_routes(app: web.Application) -> None:
    """`/openapi.json`, `/docs`, `/redoc`, and the two pages' scripts."""
    page = Reply(description="An HTML page.", media_type="text/html", schema={"type": "string"})
    document = Reply(description="The OpenAPI 3.1 document.", schema={"type": "object"})
    route(
        app,
        "GET",
        "/openapi.json",
        _openapi,
        Operation(summary="This API as OpenAPI 3.1", tag="docs", replies={200: document}),
    )
    route(
        app,
        "GET",
        "/docs",
        _swagger,
        Operation(summary="Swagger UI for this API", tag="docs", replies={200: page}),
    )
    route(
        app, "GET", "/redoc", _redoc, Operation(summary="Redoc for this API", tag="docs", replies={200: page})
    )
    app[_DOCUMENT] = []
    for name in _SWAGGER_FILES:
        app.router.add_get(f"{SWAGGER_ASSETS}/{name}", _asset(swagger_ui.static_path / name))
    app.router.add_get(f"{REDOC_ASSETS}/{_REDOC_SCRIPT}", _redoc_script)
    app.router.add_get(f"{REDOC_ASSETS}/{_REDOC_LOGO_FILE}", _asset(redoc.static_path / _REDOC_LOGO_FILE))


def openapi_document(app: web.Application) -> dict[str, Any]:
    operations = app.get(OPERATIONS, {})
    keys, schemas = _schemas(operations.values())
    query_defs: set[str] = set()  # the query models: their fields are parameters, not schemas
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), operation in sorted(operations.items()):
        described = _operation(method, path, operation, keys, schemas, query_defs=query_defs)
        paths.setdefault(path, {})[method.lower()] = described
    bodies = {_name(keys[(model, "validation")]) for model in _bodies(operations.values())}
    defs = {name: schema for name, schema in schemas.items() if name not in query_defs - bodies}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "voxbus",
            "version": __version__,
            "description": "Real-time audio over WebSocket: recording sessions, echo, wearables and "
            "carrier calls. The WebSocket endpoints are listed with their query parameters; their "
            "messages are in docs/api.md. With `API_KEY` set, the endpoints marked with a lock take "
            "one of the keys in any of the ways shown.",
        },
        "paths": paths,
        "components": {"schemas": defs, "securitySchemes": API_KEY_SCHEMES},
    }


Keys = Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]]


def _schemas(operations: Iterable[Operation]) -> tuple[Keys, dict[str, Any]]:
    """Every model's schema, named once in `components/schemas`."""
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {}
    for operation in operations:
        for model in (operation.query, operation.body):
            if model is not None:
                wanted[(model, "validation")] = None
        for reply in operation.replies.values():
            if reply.body is not None:
                wanted[(reply.body, "serialization")] = None
    keys, top = models_json_schema(list(wanted), ref_template=REF_PREFIX + "{model}")
    return keys, dict(top.get("$defs", {}))


def _operation(
    method: str, path: str, operation: Operation, keys: Keys, schemas: dict[str, Any], *, query_defs: set[str]
) -> dict[str, Any]:
    """One operation's object; the query model's name goes into `query_defs` (its fields are
    parameters, not a schema of their own)."""
    parameters = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": operation.path_params[name].description,
            "schema": dict(operation.path_params[name].schema),
        }
        for name in _path_names(path)
    ]
    if operation.query is not None:
        name = _name(keys[(operation.query, "validation")])
        query_defs.add(name)
        definition = schemas[name]
        required = set(definition.get("required", ()))
        for param, given in definition["properties"].items():
            schema = _query_schema(given)
            described = {"description": schema.pop("description")} if "description" in schema else {}
            parameters.append(
                {"name": param, "in": "query", "required": param in required, "schema": schema, **described}
            )
    body: dict[str, Any] = {
        "summary": operation.summary,
        "operationId": f"{method.lower()}{_operation_id(path)}",
        "tags": [operation.tag],
        "responses": {
            str(status): _reply(reply, keys) for status, reply in sorted(operation.replies.items())
        },
    }
    if operation.description:
        body["description"] = operation.description
    if parameters:
        body["parameters"] = parameters
    if operation.body is not None:
        schema = keys[(operation.body, "validation")]
        body["requestBody"] = {
            "required": True,
            "content": {media_type: {"schema": schema} for media_type in operation.body_types},
        }
    if operation.api_key:
        body["security"] = [{scheme: []} for scheme in API_KEY_SCHEMES]
    return body


def _query_schema(given: Mapping[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a field that may be None is one a query leaves out (a query
    has no null), so its null branch and default go; the title is the name again."""
    schema = {key: value for key, value in given.items() if key != "title"}
    if schema.get("default", ...) is None:
        del schema["default"]
    branches = [branch for branch in schema.get("anyOf", ()) if branch != {"type": "null"}]
    if "anyOf" in schema and len(branches) == 1:
        del schema["anyOf"]
        schema.update(branches[0])
    return schema


def _reply(reply: Reply, keys: Keys) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": reply.description}
    if reply.body is not None:
        answer["content"] = {reply.media_type: {"schema": keys[(reply.body, "serialization")]}}
    elif reply.schema is not None:
        answer["content"] = {reply.media_type: {"schema": dict(reply.schema)}}
    return answer


def _name(ref: Mapping[str, Any]) -> str:
    return str(ref["$ref"]).removeprefix(REF_PREFIX)


def _bodies(operations: Iterable[Operation]) -> set[type[BaseModel]]:
    return {operation.body for operation in operations if operation.body is not None}


def _path_names(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _operation_id(path: str) -> str:
    words = [part.strip("{}").replace(".", "_").replace("-", "_") for part in path.split("/") if part]
    return "".join(word[:1].upper() + word[1:] for word in words) or "Root"


async def _openapi(request: web.Request) -> web.Response:
    built = request.app[_DOCUMENT]
    if not built:
        built.append(openapi_document(request.app))
    return web.json_response(built[0])


def _asset(path: Path) -> Handler:
    async def serve(request: web.Request) -> web.FileResponse:
        return web.FileResponse(path)

    return serve


def _page(head: str, body: str) -> str:
    """A docs page: the API's title, no favicon request, then what the viewer needs."""
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<title>voxbus API</title>\n<link rel="icon" href="data:,">\n{head}</head>\n'
        f"<body>\n{body}</body>\n</html>\n"
    )


_SWAGGER_PAGE: Final = _page(
    f'<link rel="stylesheet" href=".{SWAGGER_ASSETS}/swagger-ui.css">\n',
    f'<div id="swagger-ui"></div>\n<script src=".{SWAGGER_ASSETS}/swagger-ui-bundle.js"></script>\n'
    "<script>\n"
    'window.ui = SwaggerUIBundle({url: "./openapi.json", dom_id: "#swagger-ui", deepLinking: true});\n'
    "</script>\n",
)
_REDOC_PAGE: Final = _page(
    "",
    f'<redoc spec-url="./openapi.json"></redoc>\n<script src=".{REDOC_ASSETS}/{_REDOC_SCRIPT}"></script>\n',
)


async def _swagger(request: web.Request) -> web.Response:
    return web.Response(text=_SWAGGER_PAGE, content_type="text/html")


@functools.cache
def _redoc_script_bytes() -> bytes:
    return (redoc.static_path / _REDOC_SCRIPT).read_bytes().replace(*_REDOC_LOGO)


async def _redoc_script(request: web.Request) -> web.Response:
    """Redoc's script, its one CDN address turned into the package's own copy of the file."""
    return web.Response(body=_redoc_script_bytes(), content_type="application/javascript")


async def _redoc(request: web.Request) -> web.Response:
    return web.Response(text=_REDOC_PAGE, content_type="text/html")
