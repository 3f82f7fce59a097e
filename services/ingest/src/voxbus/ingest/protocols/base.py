"""The one small interface between WebSocket protocol adapters and the connection driver.

An adapter translates its wire format to and from voxbus's: it reads the connect request,
answers the client's messages, and wraps egress audio for the wire. It asks its connection only
what `Connection` names; the driver (`voxbus.ingest.connection`) does everything
protocol-independent, and adapters never import it. The driver also hears a session being
closed from outside its socket (`POST …/close`, the pipeline ending it) and hands that to
`Adapter.on_close_request`, whose default suits any protocol without a close reply of its own.
"""

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from aiohttp import web

from voxbus.common.client_messages import ClientMessage, ErrorReply, InvalidApiKey
from voxbus.common.settings import Settings
from voxbus.ingest.acks import OnDurable
from voxbus.ingest.sessions import SessionSpec


class SessionRefused(Exception):
    """A session cannot be opened or resumed: the client gets `reply`, then close `code`."""

    def __init__(self, reply: ErrorReply, code: int) -> None:
        super().__init__(reply.error)
        self.reply, self.code = reply, code


class Connection(Protocol):
    """One socket's session, as its adapter sees it."""

    @property
    def settings(self) -> Settings: ...

    @property
    def session_id(self) -> str | None:
        """The session's id once it was opened or resumed."""

    @property
    def chunk_count(self) -> int:
        """The session's chunks the recording holds (every socket of it counted), so far."""

    @property
    def finished(self) -> bool:
        """This socket stopped the session (it takes no more audio)."""

    async def open(self, spec: SessionSpec) -> str:
        """Create a session, claim it for this socket and start its stream; its id."""

    async def resume(self, session_id: str) -> None:
        """Claim an active session for this socket (waiting a moment for a previous socket to
        let go) and continue its stream; `SessionRefused` when it cannot."""

    async def audio(self, data: bytes, on_durable: OnDurable) -> None:
        """Produce a chunk; `on_durable(ok)` runs, in chunk order, once it is on the bus (or failed)."""

    async def finish(self, reason: str, *, wait: bool) -> dict[str, Any] | None:
        """Stop the session after its last chunk; with `wait`, its info once the file is complete."""

    async def ignore_close_requests(self) -> None:
        """This socket ends its session itself (its client asked to): from now on a close request
        from outside goes unheard here. One whose answer is under way goes on."""

    async def send(self, message: ClientMessage) -> None:
        """A JSON message to the client (nothing once the socket is closed)."""

    async def send_text(self, text: str) -> None:
        """A text message as it is (the chunk ack's fast form, plain-text protocols)."""

    async def close(self, code: int, message: str = "") -> None:
        """Close the socket with `code` and `message` as the reason (cut to 120 bytes)."""


class Adapter(ABC):
    """One instance per connection."""

    protocol: ClassVar[str]
    auth_close_code: ClassVar[int] = 1008  # 4001 for /ws/echo, whose clients expect it

    def __init__(self, request: web.Request) -> None:
        self.request = request

    @abstractmethod
    async def on_open(self, conn: Connection) -> bool:
        """Validate the request, open or resume the session, greet. False: the socket was closed."""

    @abstractmethod
    async def on_text(self, conn: Connection, text: str) -> None: ...

    @abstractmethod
    async def on_binary(self, conn: Connection, data: bytes) -> None: ...

    async def on_timeout(self, conn: Connection, reason: str) -> None:
        """Idle timeout or maximum duration: finish the session and close with 1000."""
        await conn.finish(reason, wait=False)
        await conn.close(1000, reason)

    async def on_close_request(self, conn: Connection, reason: str) -> None:
        """The session is closed from outside this socket: `POST …/close` (`reason` "closed over
        HTTP"), or the pipeline ended it (`reason`: its close reason, e.g. the recording's error).
        Called once, in a task of its own, while the socket's messages are read on. Default:
        finish the session as the client's close would, then close with 1000 and `reason`."""
        if conn.finished:
            return
        await conn.finish(reason, wait=False)
        await conn.close(1000, reason)

    async def on_disconnect(self, conn: Connection) -> None:  # noqa: B027 - optional hook
        """The client went away without closing the session (default: it stays resumable)."""

    def auth_error(self) -> ClientMessage | None:
        """The message sent before closing on a bad key (None: close without a message)."""
        return InvalidApiKey()

    @abstractmethod
    def egress(self, audio: bytes) -> list[str | bytes]:
        """Wire messages carrying egress audio (echo, prompts) to the client."""
