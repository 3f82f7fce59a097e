"""`/openapi.json`, `/docs` and `/redoc` as a client developer meets them: a valid OpenAPI 3.1
document that lists every route the server serves, whose every operation answers with a status
and body it documents; the two pages and their scripts served by the process itself (no CDN);
and schemathesis, generating requests from the document, gets no 5xx from a live `voxbus up`."""

import asyncio
import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
from openapi_spec_validator import validate

from tests.browser import browser, offline
from tests.servers import embedded_app, up_process
from voxbus.common.runtime import create_app
from voxbus.common.runtime.api_docs import openapi_document
from voxbus.common.settings import Settings
from voxbus.telephony.service import SERVICE as TELEPHONY

SESSION_ID = str(uuid.UUID(int=7))
PATH_VALUES = {"session_id": SESSION_ID, "call_id": "CALL-DOCS", "index": "0", "key_id": "3f9a0c1b7d2e"}


def served_routes(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route but the pages' scripts; HEAD is served with each GET."""
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None and "/assets" not in route.resource.canonical
    }


def documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """The schema with its refs resolvable: the document's components beside it."""
    return {**schema, "components": document["components"]}


async def test_the_document_is_valid_openapi_and_lists_every_route_and_only_those(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path) as (base, app),
        aiohttp.ClientSession() as http,
        http.get(f"{base}/openapi.json") as response,
    ):
        assert response.status == 200
        document = await response.json()
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert documented(document) == served_routes(app)
    assert {"/api/audio/sessions/{session_id}/audio", "/ws", "/vonage/answer", "/api/calls"} <= set(
        document["paths"]
    )
    # the session's info is the model the handler answers with, fields and all
    info = document["components"]["schemas"]["SessionInfo"]
    assert {"session_id", "status", "file_path", "segments", "duration_seconds"} <= set(info["required"])


def test_a_telephony_process_documents_only_what_it_serves() -> None:
    app = create_app(Settings(), [TELEPHONY])
    document = openapi_document(app)
    validate(document)
    assert documented(document) == served_routes(app)
    assert not any(path.startswith(("/ws", "/api/audio")) for path in document["paths"])


async def test_every_documented_operation_answers_with_a_status_and_body_it_documents(tmp_path: Path) -> None:
    """Each operation, called as a client reading only the document would (path parameters
    filled in, no body): the status is one it lists, and a JSON body matches its schema."""
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/openapi.json") as response:
            document = await response.json()
        checked = 0
        for path, item in document["paths"].items():
            url = base + re.sub(r"\{(\w+)\}", lambda match: PATH_VALUES[match[1]], path)
            for method, operation in item.items():
                async with http.request(method.upper(), url) as response:
                    body = await response.read()
                    where = f"{method.upper()} {path} → {response.status} {body[:200]!r}"
                    assert str(response.status) in operation["responses"], where
                    content = operation["responses"][str(response.status)].get("content", {})
                    if response.content_type == "application/json":
                        schema = content["application/json"]["schema"]
                        jsonschema.validate(json.loads(body), resolve(schema, document))
                    checked += 1
        assert checked == len(documented(document))


async def test_the_docs_pages_and_their_scripts_are_served_by_the_process_itself(tmp_path: Path) -> None:
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        for page in ("/docs", "/redoc"):
            async with http.get(base + page) as response:
                assert response.status == 200
                assert response.content_type == "text/html"
                html = await response.text()
            assets = re.findall(r'(?:src|href)="\./([^"]+)"', html)
            assert assets, html
            assert "http" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', html))  # no CDN
            for asset in assets:
                async with http.get(f"{base}/{asset}") as response:
                    assert response.status == 200, asset
                    assert len(await response.read()) > 10_000, asset


async def test_schemathesis_gets_no_server_error_from_any_operation(tmp_path: Path) -> None:
    """schemathesis generates requests from the document (its examples, then what the schemas
    allow) against `voxbus up` in a process of its own; no answer may be a 5xx."""
    async with up_process(tmp_path) as server:
        command = [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--exclude-tag",
            "websocket",  # a request with the upgrade would open a socket; without it, 400
            "--max-examples",
            "25",
            "--phases",
            "examples,fuzzing",
            "--seed",
            "1",
            "--workers",
            "2",
            "--generation-database",
            "none",
        ]
        process = await asyncio.create_subprocess_exec(
            *command,
            cwd=tmp_path,  # its cache
            env={**os.environ, "NO_COLOR": "1"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), timeout=600)
    assert process.returncode == 0, out.decode()[-8000:]


async def test_the_docs_pages_render_in_a_browser_with_no_internet(tmp_path: Path) -> None:
    """Swagger UI lists every operation and Redoc shows the API's title, in chromium, with
    every request off this machine refused: none is even tried, and nothing the pages ask this
    server for is missing."""
    async with embedded_app(tmp_path) as (base, app), browser() as chromium_:
        page = await chromium_.new_page()
        tried = await offline(page)
        failed: list[str] = []  # what the browser's console reports (a 404 of a file the page wants)
        page.on("console", lambda message: failed.append(message.text) if message.type == "error" else None)
        document = openapi_document(app)
        await page.goto(f"{base}/docs")
        await page.wait_for_selector(".opblock")
        assert await page.locator(".opblock").count() == len(documented(document))
        await page.goto(f"{base}/redoc")
        await page.wait_for_selector("h1")
        assert (await page.text_content("h1") or "").startswith("voxbus")
        await page.wait_for_load_state("networkidle")
    assert tried == []
    assert failed == []


async def test_head_answers_a_download_but_not_a_webhook_that_records_on_get(tmp_path: Path) -> None:
    """HEAD runs a GET's handler: the downloads answer it, but the GET webhooks (which record a
    call or a callback) refuse it with 405, as before they were documented."""
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        for path in ("/vonage/answer?uuid=HEAD-1", "/exotel/passthru?CallSid=HEAD-2", "/callback"):
            async with http.head(base + path) as response:
                assert response.status == 405, path
        async with http.head(f"{base}/api/audio/sessions/{SESSION_ID}/audio") as response:
            assert response.status == 404  # the route answers HEAD: no such session
        async with http.get(f"{base}/api/calls") as response:
            assert (await response.json())["calls"] == []  # no HEAD made a call record
