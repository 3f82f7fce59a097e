"""`voxbus sessions list|show|download`, `voxbus calls list|show` and `voxbus keys
create|list|revoke`: what a running voxbus holds, from the command line.

Each command is one request to the HTTP API (docs/api.md) at `--url` (`VOXBUS_URL`, default
http://127.0.0.1:8000), with `--api-key` (`VOXBUS_API_KEY`) sent as `Authorization: Bearer` when
given. A list prints one line per record and, when there is more, the `--cursor` of the next
page; `show` prints the record's JSON; `download` writes the session's WAV file (or one
segment's). Every error prints one line, the server's message and the HTTP status (or why the
server could not be reached), and exits 1.
"""

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import aiohttp

from voxbus.common.constants import KEY_SCOPES

DEFAULT_URL: Final = "http://127.0.0.1:8000"
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60)
_DOWNLOAD_CHUNK = 1 << 16


class ApiError(Exception):
    """A request that did not succeed; its one-line reason."""


def add_arguments(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    sessions = commands.add_parser("sessions", help="recorded sessions: list, show, download")
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _with_server(actions.add_parser("list", help="sessions, newest first"))
    listing.add_argument("--user-id", help="only this user's sessions")
    listing.add_argument("--status", help="only sessions in this status (active, completed, …)")
    _with_paging(listing)
    _with_server(actions.add_parser("show", help="one session's record (JSON)")).add_argument("id")
    download = _with_server(actions.add_parser("download", help="one session's WAV file"))
    download.add_argument("id")
    download.add_argument("-o", "--output", type=Path, help="where to write it (default: ID.wav)")
    download.add_argument(
        "--segment",
        type=int,
        metavar="N",
        help="only its 30-second segment N (0, 1, … as `show` lists them; default name: ID_N.wav)",
    )

    calls = commands.add_parser("calls", help="telephony call records: list, show")
    actions = calls.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = _with_server(actions.add_parser("list", help="calls, newest first"))
    listing.add_argument("--provider", help="only this carrier's calls (vonage, exotel, twilio)")
    listing.add_argument("--status", help="only calls whose latest status is this")
    _with_paging(listing)
    _with_server(actions.add_parser("show", help="one call's record (JSON)")).add_argument("id")

    keys = commands.add_parser("keys", help="tenant API keys (with an admin key): create, list, revoke")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = _with_server(actions.add_parser("create", help="a new key for a tenant (printed once)"))
    create.add_argument("--tenant", required=True, help="whose: lowercase letters, digits, - and _")
    create.add_argument(
        "--scope",
        action="append",
        choices=KEY_SCOPES,
        help="what it may do: stream (send audio), read (list, download); repeat for both (default)",
    )
    create.add_argument("--name", default="", help="a note to recognise the key by")
    _with_server(actions.add_parser("list", help="every key's id, tenant and scopes (never the key)"))
    _with_server(actions.add_parser("revoke", help="refuse a key from now on")).add_argument("key_id")


def _with_server(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument(
        "--url", default=os.environ.get("VOXBUS_URL", DEFAULT_URL), help="voxbus's HTTP address"
    )
    parser.add_argument(
        "--api-key", default=os.environ.get("VOXBUS_API_KEY"), help="the API key, if the server has one"
    )
    return parser


def _with_paging(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, help="at most this many (the server caps it)")
    parser.add_argument("--cursor", help="the page after the one that printed this cursor")


def main(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_run(args))
    except ApiError as exc:
        sys.stderr.write(f"voxbus: {exc}\n")
        return 1
    return 0


async def _run(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    base = args.url.rstrip("/")
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=_TIMEOUT) as http:
            await _COMMANDS[(args.command, args.action)](_Api(http, base), args)
    except (aiohttp.ClientConnectionError, TimeoutError) as exc:
        raise ApiError(f"cannot reach {base}: {exc or type(exc).__name__}") from None
    except aiohttp.ClientError as exc:  # not an HTTP address, a body cut short, not JSON
        raise ApiError(f"{base}: {exc or type(exc).__name__}") from None


@dataclass(frozen=True, slots=True)
class _Api:
    http: aiohttp.ClientSession
    base: str  # http(s)://host[:port][/prefix], no trailing slash

    def get(self, path: str, query: dict[str, str] | None = None) -> Any:
        """`GET base + path` (an async context manager, as `ClientSession.get`)."""
        return self.http.get(f"{self.base}{path}", params=query or {})

    async def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """`POST base + path` with a JSON body; the answer's JSON."""
        async with self.http.post(f"{self.base}{path}", json=body or {}) as response:
            await _raise_for(response)
            return await response.json()


async def _get_json(api: _Api, path: str, query: dict[str, str]) -> Any:
    async with api.get(path, query) as response:
        await _raise_for(response)
        return await response.json()


async def _raise_for(response: aiohttp.ClientResponse) -> None:
    if response.status < 400:
        return
    text = await response.text()
    try:
        message = str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        message = text.strip().splitlines()[0][:200] if text.strip() else response.reason or "error"
    raise ApiError(f"{message} (HTTP {response.status})")


def _query(args: argparse.Namespace, *names: str) -> dict[str, str]:
    return {name: str(value) for name in names if (value := getattr(args, name, None)) is not None}


def _print_page(items: list[dict[str, Any]], next_cursor: str | None, columns: tuple[str, ...]) -> None:
    rows = [[_cell(item.get(column)) for column in columns] for item in items]
    widths = [max([len(column)] + [len(row[index]) for row in rows]) for index, column in enumerate(columns)]
    for row in [list(columns), *rows]:
        _say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if next_cursor is not None:
        _say(f"more: --cursor {next_cursor}")


def _say(line: str) -> None:
    """A line of the command's output (stdout: the result, not a log)."""
    sys.stdout.write(f"{line}\n")


def _cell(value: Any) -> str:
    return "-" if value is None or value == "" else str(value)


async def _list_sessions(api: _Api, args: argparse.Namespace) -> None:
    query = _query(args, "status", "limit", "cursor")
    if args.user_id is not None:
        query["user_id"] = args.user_id
    page = await _get_json(api, "/api/audio/sessions", query)
    columns = ("session_id", "status", "duration_seconds", "format", "user_id", "created_at")
    _print_page(page["sessions"], page["next_cursor"], columns)


async def _show_session(api: _Api, args: argparse.Namespace) -> None:
    _say(json.dumps(await _get_json(api, f"/api/audio/sessions/{args.id}", {}), indent=2))


async def _download_session(api: _Api, args: argparse.Namespace) -> None:
    segment: int | None = args.segment
    what = "audio" if segment is None else f"segments/{segment}"
    target: Path = args.output or Path(f"{args.id}.wav" if segment is None else f"{args.id}_{segment}.wav")
    partial = target.with_name(target.name + ".part")
    size = 0
    try:
        async with api.get(f"/api/audio/sessions/{args.id}/{what}") as response:
            await _raise_for(response)
            with partial.open("wb") as out:
                async for chunk in response.content.iter_chunked(_DOWNLOAD_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
        partial.replace(target)
    except OSError as exc:
        raise ApiError(f"cannot write {target}: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    _say(f"{target} ({size} bytes)")


async def _list_calls(api: _Api, args: argparse.Namespace) -> None:
    page = await _get_json(api, "/api/calls", _query(args, "provider", "status", "limit", "cursor"))
    columns = ("call_id", "provider", "status", "mode", "from", "to", "session_id")
    _print_page(page["calls"], page["next_cursor"], columns)


async def _show_call(api: _Api, args: argparse.Namespace) -> None:
    _say(json.dumps(await _get_json(api, f"/api/calls/{args.id}", {}), indent=2))


async def _create_key(api: _Api, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {"tenant": args.tenant, "name": args.name}
    if args.scope:
        body["scopes"] = sorted(set(args.scope))
    created = await api.post("/api/keys", body)
    _say(created["key"])
    sys.stderr.write(
        f"key {created['key_id']} for tenant {created['tenant']} ({', '.join(created['scopes'])}): "
        "shown this once, voxbus keeps only its hash\n"
    )


async def _list_keys(api: _Api, args: argparse.Namespace) -> None:
    listed = await _get_json(api, "/api/keys", {})
    for key in listed["keys"]:
        key["scopes"] = ",".join(key["scopes"])
    _print_page(listed["keys"], None, ("key_id", "tenant", "scopes", "name", "created_at", "revoked_at"))


async def _revoke_key(api: _Api, args: argparse.Namespace) -> None:
    revoked = await api.post(f"/api/keys/{quote(args.key_id, safe='')}/revoke")
    _say(f"revoked {revoked['key_id']} (tenant {revoked['tenant']})")


_COMMANDS: Final = {
    ("sessions", "list"): _list_sessions,
    ("sessions", "show"): _show_session,
    ("sessions", "download"): _download_session,
    ("calls", "list"): _list_calls,
    ("calls", "show"): _show_call,
    ("keys", "create"): _create_key,
    ("keys", "list"): _list_keys,
    ("keys", "revoke"): _revoke_key,
}
