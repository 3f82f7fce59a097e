"""Malformed HTTP requests are refused with 4xx and logged as one brief, rate-limited line; the
server log keeps no ERROR and no traceback for them, and well-formed requests keep working."""

import asyncio
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.servers import embedded

BAD_REQUESTS = {
    "8 KB URL": b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad Content-Length": b"POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two Content-Lengths": (
        b"POST /callback HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    ),
    "8 KB header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n",
    "bad chunk size": (
        b"POST /callback HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n"
    ),
}
ROUNDS = 60


async def status_line(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 10)).strip()
    finally:
        writer.close()
        await writer.wait_closed()


async def test_malformed_requests_get_400_and_one_brief_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        port = int(base.rsplit(":", 1)[1])
        for _ in range(ROUNDS):
            for name, raw in BAD_REQUESTS.items():
                line = await status_line(port, raw)
                assert line.startswith((b"HTTP/1.0 4", b"HTTP/1.1 4")), (name, line)
            async with http.get(f"{base}/health") as response:
                assert response.status == 200

    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    tracebacks = [r for r in caplog.records if r.exc_info or r.exc_text]
    assert not errors, f"{len(errors)} ERROR lines, first: {errors[0].getMessage()}"
    assert not tracebacks, f"{len(tracebacks)} lines with a traceback"
    # (the test server's access log, off in `voxbus serve`, has a line per request)
    refused = [r for r in caplog.records if r.name == "aiohttp.server" and r.levelno >= logging.INFO]
    # 300 bad requests within a few seconds: one line per 10 s, plus one if the clock ticked over
    assert 1 <= len(refused) <= 3, [r.getMessage() for r in refused]
    first = refused[0]
    assert first.levelno == logging.WARNING
    assert first.getMessage() == "malformed HTTP request refused"
    assert vars(first)["peer"] == "127.0.0.1"
    assert vars(first)["status"] == 400
    assert "\n" not in vars(first)["reason"]
    assert len(vars(first)["reason"]) <= 160


@pytest.mark.parametrize("path", ["/twilio/voice", "/twilio/status", "/exotel/passthru", "/exotel/status"])
@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=x"])
async def test_a_webhook_whose_form_cannot_be_read_gets_400_with_the_reason(
    tmp_path: Path, path: str, content_type: str
) -> None:
    """A form body that is no form (multipart without a boundary, or with one it never uses) is
    the caller's error: 400 naming the form, never a 500."""
    async with embedded(tmp_path) as base, aiohttp.ClientSession() as http:
        headers = {"Content-Type": content_type}
        async with http.post(
            base + path, data=b"CallSid=CA1&CallStatus=ringing", headers=headers
        ) as response:
            assert response.status == 400
            body = await response.json()
    assert body["error"].startswith("Invalid ")
    assert "form" in body["detail"]
