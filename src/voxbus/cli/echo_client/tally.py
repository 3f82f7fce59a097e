"""What was sent and what came back, and the summary the client prints."""

import asyncio
import statistics
import time


class Tally:
    """What was sent and what came back, matched in order.

    Chunk i is back when every byte up to its end has come back: the same as matching message i to
    message i when the server echoes chunks whole, and still right if it splits or joins them.
    """

    def __init__(self) -> None:
        self.changed = asyncio.Event()
        self._sent_ends: list[int] = []
        self._sent_at: list[float] = []
        self._delays: list[float] = []
        self.sent_bytes = 0
        self.received_bytes = 0
        self._ping_at: float | None = None
        self._ping_rtt: float | None = None

    def sent(self, size: int, at: float) -> None:
        self.sent_bytes += size
        self._sent_ends.append(self.sent_bytes)
        self._sent_at.append(at)

    def received(self, size: int, at: float) -> None:
        self.received_bytes += size
        while (
            len(self._delays) < len(self._sent_ends)
            and self._sent_ends[len(self._delays)] <= self.received_bytes
        ):
            self._delays.append(at - self._sent_at[len(self._delays)])
        self.changed.set()

    def ping_sent(self, at: float) -> None:
        self._ping_at = at

    def pong(self, at: float) -> None:
        if self._ping_at is not None and self._ping_rtt is None:
            self._ping_rtt = at - self._ping_at

    def all_back(self) -> bool:
        return self.received_bytes >= self.sent_bytes

    def last_echo_due(self) -> float:
        """When the last chunk should come back, judging by the delays seen so far."""
        last_sent = self._sent_at[-1] if self._sent_at else time.monotonic()
        return last_sent + max(self._delays, default=0.0)

    def summary(self) -> str:
        return (
            f"chunks sent: {len(self._sent_ends)}, chunks received: {len(self._delays)} "
            f"({self.received_bytes} of {self.sent_bytes} bytes back)\n"
            f"echo delay: {self._delay_text()}\n"
            f"ping round trip: {_ms(self._ping_rtt) if self._ping_rtt is not None else 'no pong'}\n"
        )

    def _delay_text(self) -> str:
        if not self._delays:
            return "no chunk came back"
        return f"median {_ms(statistics.median(self._delays))}, max {_ms(max(self._delays))}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"
