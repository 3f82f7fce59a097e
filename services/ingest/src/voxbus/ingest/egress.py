"""Return routes (DESIGN §4): this pod's egress partition, the routes of its sessions, delivery.

The pod claims one `voxbus.egress` partition with a lease, consumes it from its end, and hands
each record to the socket of the session it is keyed by. A socket's route (`voxbus:route:{id}` =
"{pod} {partition}") is written when it attaches and renewed while it lives, so echo and
telephony produce to the partition of whichever pod holds the session now.

An egress record with a `seq` header (an echo: its chunk's session seq) is delivered only if its
seq is above the last one delivered to the session here: an echo producer that crashed and sent
a few again does not make the client hear them twice.
"""

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable

from voxbus.common.bus.base import Bus, Consumer
from voxbus.common.constants import Header, Key
from voxbus.common.store.base import StateStore, StoreBatch
from voxbus.ingest.leases import LeaseKeeper

log = logging.getLogger(__name__)

Sink = Callable[[bytes], Awaitable[None]]


class NoEgressPartition(RuntimeError):
    """Every egress partition is leased: there are more ingest pods than EGRESS_PARTITIONS."""


class EgressRouter:
    def __init__(
        self, bus: Bus, store: StateStore, leases: LeaseKeeper, *, topic: str, partitions: int, pod: str
    ) -> None:
        self._bus, self._store, self._leases = bus, store, leases
        self._topic, self._partitions, self._pod = topic, partitions, pod
        self._sinks: dict[str, Sink] = {}
        self._delivered_seq: dict[str, int] = {}  # per session: the highest seq delivered
        self._consumer: Consumer | None = None
        self.partition: int | None = None

    async def start(self) -> None:
        """Lease a partition if one is free now; `run` keeps trying otherwise (not ready till then)."""
        await self._claim()

    async def _claim(self) -> bool:
        first = zlib.crc32(self._pod.encode()) % self._partitions  # pods spread over the partitions
        for step in range(self._partitions):
            partition = (first + step) % self._partitions
            if await self._leases.claim_key(Key.EGRESS_LEASE + str(partition), self._pod):
                self.partition = partition
                self._consumer = self._bus.partition_tail(self._topic, partition)
                await self._consumer.start()
                batch = self._store.batch()
                for session_id in self._sinks:
                    self._leases.hold_key(batch, Key.ROUTE + session_id, self._route())
                await batch.execute()
                log.info("egress partition leased", extra={"partition": partition})
                return True
        return False

    def _route(self) -> str:
        return f"{self._pod} {self.partition}"

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self.partition is not None:
            batch = self._store.batch()
            self._leases.drop_key(batch, Key.EGRESS_LEASE + str(self.partition))
            await batch.execute()

    async def ready(self) -> None:
        if self.partition is None:
            raise NoEgressPartition(f"all {self._partitions} egress partitions are leased by other pods")
        holder = await self._store.get(Key.EGRESS_LEASE + str(self.partition))
        if holder != self._pod:
            raise NoEgressPartition(f"egress partition {self.partition} lease is held by {holder!r}")

    def attach(self, batch: StoreBatch, session_id: str, sink: Sink) -> None:
        """Deliver the session's egress to `sink`; its route is written with `batch`."""
        self._sinks[session_id] = sink
        if self.partition is not None:  # otherwise written once a partition is leased
            self._leases.hold_key(batch, Key.ROUTE + session_id, self._route())

    def detach(self, batch: StoreBatch, session_id: str, sink: Sink) -> None:
        if self._sinks.get(session_id) is sink:
            del self._sinks[session_id]
            self._delivered_seq.pop(session_id, None)
            self._leases.drop_key(batch, Key.ROUTE + session_id)

    async def run(self, retry_seconds: float) -> None:
        """Lease a partition if we have none yet, then deliver egress records until cancelled."""
        while self._consumer is None:
            await asyncio.sleep(retry_seconds)
            await self._claim()
        while True:
            for record in await self._consumer.getmany(timeout_ms=1000):
                session_id = (record.key or b"").decode("ascii", "replace")
                sink = self._sinks.get(session_id)
                if sink is None:
                    continue  # the session moved or ended; its new pod gets what follows
                if self._seen(session_id, record.headers):
                    continue
                with contextlib.suppress(ConnectionError):
                    await sink(record.value)

    def _seen(self, session_id: str, headers: tuple[tuple[str, bytes], ...]) -> bool:
        """Whether this record (by its seq, when it has one) was delivered to the session already."""
        for name, value in headers:
            if name == Header.SEQ and value:
                seq = int(value)
                if seq <= self._delivered_seq.get(session_id, -1):
                    return True
                self._delivered_seq[session_id] = seq
        return False
