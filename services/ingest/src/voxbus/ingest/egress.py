"""Return routes (DESIGN §4): this pod's egress partition, the routes of its sessions, delivery.

The pod claims one `voxbus.egress` partition with a lease, consumes it from its end, and hands
each record to the socket of the session it is keyed by. A socket's route (`voxbus:route:{id}` =
"{pod} {partition}") is written when it attaches and renewed while it lives, so echo and
telephony produce to the partition of whichever pod holds the session now.
"""

import contextlib
import logging
import zlib
from collections.abc import Awaitable, Callable

from voxbus.common.bus.base import Bus, Consumer
from voxbus.common.constants import Key
from voxbus.common.store.base import StateStore
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
        self._consumer: Consumer | None = None
        self.partition: int | None = None

    async def start(self) -> None:
        first = zlib.crc32(self._pod.encode()) % self._partitions  # pods spread over the partitions
        for step in range(self._partitions):
            partition = (first + step) % self._partitions
            if await self._leases.claim_key(Key.EGRESS_LEASE + str(partition), self._pod):
                self.partition = partition
                break
        if self.partition is None:
            raise NoEgressPartition(f"all {self._partitions} egress partitions are leased by other pods")
        self._consumer = self._bus.partition_tail(self._topic, self.partition)
        await self._consumer.start()
        log.info("egress partition leased", extra={"partition": self.partition})

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self.partition is not None:
            await self._leases.drop_key(Key.EGRESS_LEASE + str(self.partition))

    async def ready(self) -> None:
        if self.partition is None:
            raise NoEgressPartition("no egress partition leased")
        holder = await self._store.get(Key.EGRESS_LEASE + str(self.partition))
        if holder != self._pod:
            raise NoEgressPartition(f"egress partition {self.partition} lease is held by {holder!r}")

    async def attach(self, session_id: str, sink: Sink) -> None:
        self._sinks[session_id] = sink
        await self._leases.hold_key(Key.ROUTE + session_id, f"{self._pod} {self.partition}")

    async def detach(self, session_id: str, sink: Sink) -> None:
        if self._sinks.get(session_id) is sink:
            del self._sinks[session_id]
            await self._leases.drop_key(Key.ROUTE + session_id)

    async def run(self) -> None:
        """Deliver egress records to their sockets until cancelled."""
        if self._consumer is None:
            raise RuntimeError("egress router not started")
        while True:
            for record in await self._consumer.getmany(timeout_ms=1000):
                session_id = (record.key or b"").decode("ascii", "replace")
                sink = self._sinks.get(session_id)
                if sink is None:
                    continue  # the session moved or ended; its new pod gets what follows
                with contextlib.suppress(ConnectionError):
                    await sink(record.value)
