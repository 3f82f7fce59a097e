"""Acknowledging chunks once they are durable, for every socket of the process.

A delivery future's done-callback marks its socket's queue ready, and one task writes the acks
of every ready queue, each in chunk order. That is one task wake-up per producer batch, where a
task per socket cost two per chunk. A socket whose send buffer is backed up is flushed by a task
of its own until it catches up, so one slow client never holds up the others' acks.
"""

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

OnDurable = Callable[[bool], Awaitable[None]]
# unacknowledged chunks, and their bytes, per socket before its reader waits (backpressure): the
# bytes bound what a socket keeps in the producer's buffers while the bus is slow (256 chunks of
# a MiB would be 256 MiB)
_BACKLOG = 256
BACKLOG_BYTES = 4 * 1024 * 1024


class AckQueue:
    """One socket's chunks in flight, acknowledged in order."""

    def __init__(
        self,
        writer: "AckWriter",
        transport: asyncio.BaseTransport | None,
        on_acked: Callable[[int], None],
        on_broken: Callable[[], None],
    ) -> None:
        self._writer, self._transport = writer, transport
        self._on_acked, self._on_broken = on_acked, on_broken
        # a chunk was not durable: the chunks after it (sent already, maybe durable) do not
        # count either, since the transcoder takes a session's chunks only in unbroken order
        self.broken = False
        self._pending: deque[tuple[asyncio.Future[Any], int, OnDurable]] = deque()
        self._caught_up = asyncio.Event()
        self._caught_up.set()
        self._room = asyncio.Event()
        self._room.set()
        self._own_flush: asyncio.Task[None] | None = None
        self._pending_bytes = 0
        self.closed = False
        # acks can no longer be written (the socket broke): chunks are still counted as they
        # settle, but nothing is written, and the reader is never held back for room
        self.muted = False

    async def add(self, delivery: "asyncio.Future[Any]", size: int, on_durable: OnDurable) -> None:
        """`on_durable(ok)` runs once this chunk and every one before it are settled."""
        if self._full():
            self._room.clear()
            await self._room.wait()
        self._pending.append((delivery, size, on_durable))
        self._pending_bytes += size
        self._caught_up.clear()
        delivery.add_done_callback(self._settled)

    async def drain(self) -> None:
        """Wait until every chunk added so far was acknowledged (or the queue closed)."""
        await self._caught_up.wait()

    async def abandon(self, timeout: float) -> int:
        """The socket is gone: acknowledge nothing more, but count the chunks in flight that
        turn out durable within `timeout`, up to the first that does not, since they are in the
        recording whether or not their acks reached the client. Returns how many chunks were not
        counted (unsettled then, failed, or behind one that was)."""
        pending = [(delivery, size) for delivery, size, _ in self._pending]
        self.close()
        if pending:
            await asyncio.wait([delivery for delivery, _ in pending], timeout=timeout)
        for counted, (delivery, size) in enumerate(pending):
            if self.broken or not _durable(delivery):
                return len(pending) - counted
            self._on_acked(size)
        return 0

    def close(self) -> None:
        """The socket is gone: acknowledge nothing more."""
        self.closed = True
        self._pending.clear()
        self._pending_bytes = 0
        self._caught_up.set()
        self._room.set()
        if self._own_flush is not None:
            self._own_flush.cancel()

    def mute(self) -> None:
        """Writing an ack failed: the reader, perhaps waiting for room, must go on to see the
        broken socket and release it (which counts what is still pending)."""
        self.muted = True
        self._room.set()

    def _full(self) -> bool:
        """A chunk may always be added to an empty queue, however large (up to the chunk limit)."""
        if self.muted:
            return False
        return len(self._pending) >= _BACKLOG or (
            self._pending_bytes >= BACKLOG_BYTES and bool(self._pending)
        )

    def _settled(self, _: "asyncio.Future[Any]") -> None:
        if not self.closed and self._own_flush is None:
            self._writer.mark_ready(self)

    @property
    def busy(self) -> bool:
        """Its own task is flushing it."""
        return self._own_flush is not None

    def congested(self) -> bool:
        transport = self._transport
        if not isinstance(transport, asyncio.WriteTransport):
            return False
        return transport.get_write_buffer_size() > transport.get_write_buffer_limits()[1] // 2

    async def flush(self) -> None:
        """Acknowledge, in order, every chunk up to the first one not settled yet."""
        pending = self._pending
        while pending and pending[0][0].done() and not self.closed:
            delivery, size, on_durable = pending.popleft()
            self._pending_bytes -= size
            ok = not self.broken and _durable(delivery)
            if ok:
                self._on_acked(size)
            elif not self.broken:  # the client is told this chunk and every later one failed
                reason = "cancelled" if delivery.cancelled() else repr(delivery.exception())
                log.warning("chunk not durable", extra={"reason": reason})
                self.broken = True
                self._on_broken()
            if not self.muted:
                await on_durable(ok)
        if not self._full():
            self._room.set()
        if not pending:
            self._caught_up.set()

    def flush_alone(self) -> None:
        """A backed-up socket: flush it in a task of its own, then hand it back to the writer."""
        if self._own_flush is None:
            self._own_flush = asyncio.create_task(self._flush_then_return(), name="acks-backed-up")

    async def _flush_then_return(self) -> None:
        try:
            await self.flush()
        except Exception:  # the socket broke while we wrote: its reader sees it and releases
            log.debug("writing acks failed", exc_info=True)
            self.mute()
        finally:
            self._own_flush = None
        if self._pending and self._pending[0][0].done():
            self._writer.mark_ready(self)  # settled while we flushed


def _durable(delivery: "asyncio.Future[Any]") -> bool:
    return delivery.done() and not delivery.cancelled() and delivery.exception() is None


class AckWriter:
    """The task that writes every socket's acks."""

    def __init__(self) -> None:
        self._ready: dict[AckQueue, None] = {}  # insertion-ordered set
        self._wake = asyncio.Event()

    def queue(
        self,
        transport: asyncio.BaseTransport | None,
        on_acked: Callable[[int], None],
        on_broken: Callable[[], None],
    ) -> AckQueue:
        """A socket's queue: `on_acked(size)` for each chunk that counts, `on_broken()` once at
        the first chunk that was not durable."""
        return AckQueue(self, transport, on_acked, on_broken)

    def mark_ready(self, queue: AckQueue) -> None:
        self._ready[queue] = None
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            ready, self._ready = self._ready, {}
            for queue in ready:
                if queue.closed or queue.busy:
                    continue
                if queue.congested():
                    queue.flush_alone()
                    continue
                try:
                    await queue.flush()
                except Exception:  # the socket broke while we wrote: its reader sees it and releases
                    # (and counts the chunks still pending that turn out durable: not dropped here)
                    log.debug("writing acks failed", exc_info=True)
                    queue.mute()
