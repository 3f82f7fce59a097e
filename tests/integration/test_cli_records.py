"""`voxbus sessions …` and `voxbus calls …` as a user runs them: the `voxbus` command in a process
of its own against a running voxbus, reading what a recording client and a carrier's webhooks
left there; errors as one line and exit status 1."""

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import numpy as np
import soundfile

from tests.clients import record_with_aiohttp
from tests.helpers import free_port
from tests.servers import embedded_app

KEY = "a-voxbus-api-key-of-32-bytes-or-more"


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


async def voxbus(*args: str, cwd: Path | None = None, **env: str) -> Ran:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "voxbus.cli",
        *args,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("VOXBUS_")}, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


def pcm(seconds: float) -> bytes:
    samples = np.random.default_rng(1).integers(-8000, 8000, int(16000 * seconds)).astype("<i2")
    return samples.tobytes()


async def test_sessions_are_listed_shown_and_downloaded_and_calls_listed_and_shown(tmp_path: Path) -> None:
    audio = pcm(1.0)
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        url = f"{base.replace('http', 'ws')}/api/ws/audio?sample_rate=16000&format=pcm&user_id=ana"
        replies = await record_with_aiohttp(url, [audio[:16000], audio[16000:]])
        session_id = replies["hello"]["session_id"]
        async with http.get(f"{base}/vonage/answer", params={"uuid": "CALL-CLI", "from": "4470"}) as r:
            assert r.status == 200

        listed = await voxbus("sessions", "list", "--url", base)
        assert listed.code == 0, listed.err
        header, row = listed.out.splitlines()
        assert header.split() == [
            "session_id",
            "status",
            "duration_seconds",
            "format",
            "user_id",
            "created_at",
        ]
        assert row.split()[:5] == [session_id, "completed", "1.0", "pcm", "ana"]

        shown = await voxbus("sessions", "show", session_id, VOXBUS_URL=base)
        assert shown.code == 0, shown.err
        async with http.get(f"{base}/api/audio/sessions/{session_id}") as r:
            assert json.loads(shown.out) == await r.json()

        target = tmp_path / "copy.wav"
        downloaded = await voxbus("sessions", "download", session_id, "-o", str(target), "--url", base)
        assert downloaded.code == 0, downloaded.err
        assert downloaded.out.strip() == f"{target} ({target.stat().st_size} bytes)"
        samples, rate = soundfile.read(target, dtype="int16")
        assert rate == 16000 and samples.tobytes() == audio
        segment = await voxbus(
            "sessions", "download", session_id, "--segment", "0", "--url", base, cwd=tmp_path
        )
        assert segment.code == 0, segment.err
        samples, _ = soundfile.read(tmp_path / f"{session_id}_0.wav", dtype="int16")
        assert samples.tobytes() == audio  # one second: one segment
        beyond = await voxbus(
            "sessions", "download", session_id, "--segment", "1", "--url", base, cwd=tmp_path
        )
        assert (beyond.code, beyond.err.strip()) == (1, "voxbus: No such segment (HTTP 404)")

        calls = await voxbus("calls", "list", "--provider", "vonage", "--url", base)
        assert calls.code == 0, calls.err
        assert calls.out.splitlines()[1].split()[:2] == ["CALL-CLI", "vonage"]
        call = await voxbus("calls", "show", "CALL-CLI", "--url", base)
        assert (call.code, json.loads(call.out)["from"]) == (0, "4470")


async def test_a_page_at_a_time_with_the_cursor_of_the_next(tmp_path: Path) -> None:
    async with embedded_app(tmp_path) as (base, _):
        url = f"{base.replace('http', 'ws')}/api/ws/audio?sample_rate=16000&format=pcm"
        ids = [(await record_with_aiohttp(url, [pcm(0.1)]))["hello"]["session_id"] for _ in range(3)]
        first = await voxbus("sessions", "list", "--limit", "2", "--url", base)
        assert first.code == 0, first.err
        *rows, more = first.out.splitlines()[1:]
        assert [row.split()[0] for row in rows] == ids[::-1][:2]  # newest first
        assert more.startswith("more: --cursor ")
        cursor = more.removeprefix("more: --cursor ")
        rest = await voxbus("sessions", "list", "--limit", "2", "--cursor", cursor, "--url", base)
        assert [row.split()[0] for row in rest.out.splitlines()[1:]] == [ids[0]]


async def test_every_error_is_one_line_with_the_servers_reason_and_exit_status_1(tmp_path: Path) -> None:
    async with embedded_app(tmp_path, api_key=KEY) as (base, _):
        refused = await voxbus("sessions", "list", "--url", base)
        assert (refused.code, refused.out, refused.err) == (1, "", "voxbus: Invalid API key (HTTP 401)\n")

        listed = await voxbus("sessions", "list", "--url", base, VOXBUS_API_KEY=KEY)
        assert (listed.code, listed.out.split()[0]) == (0, "session_id")

        unknown = "0b8d5b52-3a43-4d1e-8f0e-7d3c2b1a0f9e"
        missing = await voxbus("sessions", "download", unknown, "--api-key", KEY, "--url", base, cwd=tmp_path)
        assert (missing.code, missing.err) == (1, "voxbus: Session not found (HTTP 404)\n")
        assert not [name for name in os.listdir(tmp_path) if name.startswith(unknown)], "nothing written"

        bad = await voxbus("sessions", "list", "--status", "sleeping", "--api-key", KEY, "--url", base)
        assert (bad.code, bad.err) == (1, "voxbus: Invalid status (HTTP 422)\n")

        no_call = await voxbus("calls", "show", "NOPE", "--api-key", KEY, "--url", base)
        assert (no_call.code, no_call.err) == (1, "voxbus: Call not found (HTTP 404)\n")

    nobody = f"http://127.0.0.1:{free_port()}"
    unreachable = await voxbus("calls", "list", "--url", nobody)
    assert unreachable.code == 1
    assert unreachable.err.startswith(f"voxbus: cannot reach {nobody}: ")
    assert unreachable.err.count("\n") == 1
