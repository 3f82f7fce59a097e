"""The one small interface between WebSocket protocol adapters and the connection driver.

An adapter translates its wire format to and from voxbus's: it reads the connect request,
answers the client's messages, and wraps egress audio for the wire. It asks its connection only
what `Connection` names; the driver (`voxbus.ingest.connection`) does everything
protocol-independent, and adapters never import it. The driver also hears a session being
closed from outside its socket (`POST …/close`, the pipeline ending it) and hands that to
`Adapter.on_close_request`, whose default suits any protocol without a close reply of its own.

An adapter serves a WebSocket or, for Wyoming, a plain TCP connection whose framing
(`voxbus.ingest.wyoming_tcp`) hands it the same text and binary messages: it sees only the
`Opening` and its `Connection`.
"""

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from aiohttp import web

from voxbus.common.call_events import CallEvent
from voxbus.common.client_messages import ClientMessage, ErrorReply, InvalidApiKey, KeyLacksScope
from voxbus.common.principal import Principal, presented_key
from voxbus.common.records import AudioFormat, EgressAudio, EgressKind
from voxbus.common.settings import Settings
from voxbus.common.tenant_keys import TenantKeys
from voxbus.ingest.acks import OnDurable
from voxbus.ingest.sessions import SessionSpec


class SessionRefused(Exception):
    """A session cannot be opened or resumed: the client gets `reply`, then close `code`."""

    def __init__(self, reply: ErrorReply, code: int) -> None:
        super().__init__(reply.error)
        self.reply, self.code = reply, code


def auth_refusal(principal: Principal | None) -> ErrorReply | None:
    """Why a connection presenting this principal may not send audio; None: it may."""
    if principal is None:
        return InvalidApiKey()
    if not principal.may("stream"):
        return KeyLacksScope(scope="stream")
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Opening:
    """What the client's connect request says: a WebSocket upgrade's query and path parameters
    (a TCP connection has neither), its transport, and who its API key makes it (None: no valid
    key; the operator when none is configured)."""

    principal: Principal | None
    query: Mapping[str, str] = field(default_factory=dict)
    match_info: Mapping[str, str] = field(default_factory=dict)
    transport: asyncio.BaseTransport | None = None


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

    @property
    def session_format(self) -> AudioFormat | None:
        """The session's audio format as its record has it, once it was opened or resumed."""

    @property
    def chunk_limit(self) -> int:
        """The largest binary message (audio chunk) taken, in bytes."""

    async def authenticate(self, key: str | None) -> Principal | None:
        """Who `key` makes the connection (a key sent in a message: Wyoming's audio-start token)."""

    async def open(self, spec: SessionSpec) -> str:
        """Create a session, claim it for this socket and start its stream; its id."""

    async def resume(self, session_id: str) -> None:
        """Claim an active session for this socket (waiting a moment for a previous socket to
        let go) and continue its stream; `SessionRefused` when it cannot."""

    async def audio(self, data: bytes, on_durable: OnDurable) -> None:
        """Produce a chunk; `on_durable(ok)` runs, in chunk order, once it is on the bus (or failed)."""

    async def finish(self, reason: str, *, wait: bool) -> dict[str, Any] | None:
        """Stop the session after its last chunk; with `wait`, its info once the file is complete."""

    async def end_session(self) -> None:
        """Let go of the finished session (its slots, route and close requests): the socket may
        open or resume another. Nothing, when a close request from outside ends the socket."""

    async def ignore_close_requests(self) -> bool:
        """This socket ends its session itself (its client asked to): from now on a close request
        from outside goes unheard here. One whose answer is under way goes on: False then (that
        answer ends the session, and the socket)."""

    async def send(self, message: ClientMessage) -> None:
        """A JSON message to the client (nothing once the socket is closed)."""

    async def send_text(self, text: str) -> None:
        """A text message as it is (the chunk ack's fast form, plain-text protocols)."""

    async def send_binary(self, data: bytes) -> None:
        """A binary message (nothing once the socket is closed)."""

    async def publish(self, event: CallEvent) -> None:
        """Put a call event on the events topic (for the telephony service); a failure is logged."""

    async def close(self, code: int, message: str = "") -> None:
        """Close the socket with `code` and `message` as the reason (cut to 120 bytes)."""


class Adapter(ABC):
    """One instance per connection."""

    protocol: ClassVar[str]
    auth_close_code: ClassVar[int] = 1008  # 4001 for /ws/echo, whose clients expect it
    # egress with a due time is handed over this long before it (an adapter that paces its
    # output writes it on time itself; 0: the router writes it when due)
    egress_lead: ClassVar[float] = 0.0
    # every reason a message on this socket can be rejected for (its series of
    # voxbus_ingest_rejected_messages_total are exported from the start)
    rejections: ClassVar[tuple[str, ...]] = ()

    def __init__(self, opening: Opening) -> None:
        self.opening = opening
        self.principal = opening.principal  # whose sessions this socket opens (Wyoming: once known)

    @classmethod
    def refuse_upgrade(cls, settings: Settings, request: web.Request) -> web.Response | None:
        """The HTTP answer refusing the upgrade request before it becomes a socket (a carrier's
        signature or address, as its webhooks are refused); None: go on (the default)."""
        return None

    @classmethod
    async def authenticate(cls, keys: TenantKeys, request: web.Request) -> Principal | None:
        """Who the upgraded socket's sessions are for (default: as its API key says); None: it may
        not open one, and is closed with `auth_close_code`."""
        return await keys.principal(presented_key(request))

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

    async def on_too_large(self, conn: Connection, reply: ErrorReply, data: str | bytes) -> None:
        """A message over the size limit (`data`, at most twice the limit; `reply` says which):
        default, the reply, then 1009. A chunk left out would be a gap in the recording; the
        session stays resumable."""
        await conn.send(reply)
        await conn.close(1009, reply.error)

    def auth_error(self, reply: ErrorReply) -> ClientMessage | None:
        """The message sent before closing on a bad key or one lacking the `stream` scope (`reply`
        says which; None: close without a message)."""
        return reply

    def render(self, message: ClientMessage) -> str:
        """A message as this protocol writes it (default: the JSON `to_wire()`)."""
        return message.to_wire()

    def closing_message(self, code: int, reason: str) -> ClientMessage | None:
        """Sent just before the server closes with `code` (default: nothing; a WebSocket's close
        frame carries the code and reason)."""
        return None

    async def on_end(self, conn: Connection) -> None:  # noqa: B027 - optional hook
        """The socket ended, whichever way: stop what the adapter runs for it."""

    async def on_egress(self, conn: Connection, egress: EgressAudio) -> bool:
        """Egress for the client (an echo, a prompt, a clear); whether audio was written or queued.
        Default: `egress()`'s messages at once; a clear means nothing to a protocol without pacing."""
        if egress.kind == EgressKind.CLEAR:
            return False
        messages = self.egress(egress.audio)
        for message in messages:
            if isinstance(message, bytes):
                await conn.send_binary(message)
            else:
                await conn.send_text(message)
        return bool(messages)

    def egress(self, audio: bytes) -> list[str | bytes]:
        """Wire messages carrying egress audio (echo, prompts) to the client (default: the bytes)."""
        return [audio]
