"""`voxbus echo-client`: the client of the delayed-echo endpoint `/ws/echo` (docs/protocols/delayed-echo.md).

It streams a WAV file (or the microphone) to the server at real time, writes what comes back to a
WAV file, and reports how late each chunk came back. It replaces the seed's PyAudio client and
keeps its stdin commands: start, stop, resume, quit.
"""

from voxbus.cli.echo_client.client import add_arguments, main

__all__ = ["add_arguments", "main"]
