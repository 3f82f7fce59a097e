"""A port that cannot be listened on stops the server with the cause and the setting to change:
the port's for a port in use; HOST for a host that does not resolve (a `socket.gaierror`, whose
errno is a negative EAI_* code and whose `os.strerror` says "unknown error") or that no local
interface has."""

import asyncio
import socket

import pytest

from voxbus.common.settings import ListenError


async def _listen_error(host: str) -> ListenError:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    try:
        server = await asyncio.start_server(serve, host, 0)
    except OSError as exc:
        return ListenError.on(host, 10700, exc, "Wyoming over TCP", "WYOMING_PORT (0 turns it off)")
    server.close()
    raise AssertionError(f"{host} was listened on")


@pytest.mark.parametrize(
    "host",
    [
        "nonexistent.invalid",  # RFC 6761: never resolves
        "192.0.2.1",  # RFC 5737 TEST-NET-1: no local interface has it
    ],
)
async def test_a_host_that_cannot_be_listened_on_is_named_as_the_cause(host: str) -> None:
    message = str(await _listen_error(host))
    assert "unknown error" not in message, message
    assert "HOST" in message, message  # the setting to change is HOST, not the port


def test_a_port_in_use_still_names_the_port_setting() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        try:
            with socket.socket() as again:
                again.bind(("127.0.0.1", port))
        except OSError as exc:
            message = str(ListenError.on("127.0.0.1", port, exc, "HTTP", "PORT (or --port)"))
    assert "address already in use" in message
    assert "PORT" in message
