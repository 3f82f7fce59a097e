"""Values in the state store that more than one module reads: the return route, and the messages
on a session's pub/sub channels. (The session hash has its own module, `session_state`; the keys
are `constants.Key`.)

Each is one small type: a route has `encode()`, and a message is the text of its enum member;
`decode` raises `StateError`, saying why, for anything voxbus does not write there.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Self


class StateError(ValueError):
    """A state-store value that is not what voxbus writes there; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where a session's socket is now: `Key.ROUTE` + id = "{pod} {partition}".

    The ingest pod holding the socket writes it (a lease: renewed while the socket lives, dropped
    when it goes); echo and telephony produce the session's egress to `partition`, the egress
    partition that pod consumes. The partition is the last word, so a pod name with a space in it
    still reads back whole.
    """

    pod: str
    partition: int

    def __post_init__(self) -> None:
        if not self.pod:
            raise StateError("a route needs a pod name")
        if self.partition < 0:
            raise StateError(f"egress partition must be >= 0, got {self.partition}")

    def encode(self) -> str:
        return f"{self.pod} {self.partition}"

    @classmethod
    def decode(cls, text: str) -> Self:
        pod, _, partition = text.rpartition(" ")
        if not partition.isdigit():
            raise StateError(f"route {text!r} does not end in an egress partition number")
        return cls(pod=pod, partition=int(partition))


class _Notice(StrEnum):
    """A pub/sub message with no body: the member's text is the whole message, published as is."""

    @classmethod
    def decode(cls, text: str) -> Self:
        try:
            return cls(text)
        except ValueError:
            raise StateError(f"not a {cls.__name__} message: {text!r}") from None


class SessionControl(_Notice):
    """Requests on a session's control channel (`Key.SESSION_CONTROL` + id), to the pod that
    holds its socket; a publish that reaches no subscriber means no pod holds one."""

    CLOSE = "close"  # close the session as a client's close would (`POST …/close` on any pod)


class SessionNotice(_Notice):
    """What happened to a session, on its event channel (`Key.SESSION_CHANNEL` + id). Waiters
    re-check the store when one arrives, so a message is a hint, never the state itself."""

    # a socket let go of the session's connection slot: a resume waiting for one may claim it
    CONNECTION_RELEASED = "connection-released"
    FINALIZED = "finalized"  # the writer completed the files (status completed or error)
