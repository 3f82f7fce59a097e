"""The one small interface every WebSocket protocol adapter implements.

An adapter translates its wire format to and from voxbus's: it reads the connect request,
answers the client's messages, and wraps egress audio for the wire. The connection driver
(`voxbus.ingest.connection`) does everything protocol-independent.
"""

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

from aiohttp import web

if TYPE_CHECKING:
    from voxbus.ingest.connection import Connection


class Adapter(ABC):
    """One instance per connection."""

    protocol: ClassVar[str]
    auth_close_code: ClassVar[int] = 1008  # API.md: 4001 for /ws/echo, whose clients expect it

    def __init__(self, request: web.Request) -> None:
        self.request = request

    @abstractmethod
    async def on_open(self, conn: "Connection") -> bool:
        """Validate the request, open or resume the session, greet. False: the socket was closed."""

    @abstractmethod
    async def on_text(self, conn: "Connection", text: str) -> None: ...

    @abstractmethod
    async def on_binary(self, conn: "Connection", data: bytes) -> None: ...

    async def on_timeout(self, conn: "Connection", reason: str) -> None:
        """Idle timeout or maximum duration: finish the session and close with 1000."""
        await conn.finish(reason, wait=False)
        await conn.close(1000, reason)

    async def on_disconnect(self, conn: "Connection") -> None:  # noqa: B027 - optional hook
        """The client went away without closing the session (default: it stays resumable)."""

    def auth_error(self) -> dict[str, str] | None:
        """The JSON sent before closing on a bad key (None: close without a message)."""
        return {"error": "Invalid API key"}

    @abstractmethod
    def egress(self, audio: bytes) -> list[str | bytes]:
        """Wire messages carrying egress audio (echo, prompts) to the client."""
