"""Return routes (docs/architecture.md, the egress topic): this pod's egress partition, the routes
of its sessions, delivery.

The pod claims one `voxbus.egress` partition with a lease, consumes it from its end, and hands
each record (`records.EgressAudio`) to the socket of the session it is keyed by. A socket's route
(`state.Route` at `voxbus:route:{id}`) is written when it attaches and renewed while it lives, so
echo and telephony produce to the partition of whichever pod holds the session now.

An egress record with a `due` header (an echo, produced ahead of time) is held until then (a
paced socket's, until its adapter's `egress_lead` before then: its pacer writes it on time), in
one timer for all sessions; a session's records are written in the order they came, held or not.
An egress record with a `seq` header (an echo: its chunk's session seq) is delivered only if its
seq is above the last one delivered to the session here: an echo producer that crashed and sent
a few again does not make the client hear them twice.
"""

import asyncio
import contextlib
import logging
import math
import time
import zlib
from collections.abc import Awaitable, Callable

from voxbus.common.bus.base import Bus, Consumer
from voxbus.common.constants import Key
from voxbus.common.records import EgressAudio, RecordError
from voxbus.common.state import Route
from voxbus.common.store.base import StateStore, StoreBatch
from voxbus.common.timer import DueQueue
from voxbus.ingest import metrics
from voxbus.ingest.leases import LeaseKeeper

log = logging.getLogger(__name__)

Sink = Callable[[EgressAudio], Awaitable[None]]


class NoEgressPartition(RuntimeError):
    """Every egress partition is leased: there are more ingest pods than EGRESS_PARTITIONS."""


class EgressRouter:
    def __init__(
        self,
        bus: Bus,
        store: StateStore,
        leases: LeaseKeeper,
        *,
        topic: str,
        partitions: int,
        pod: str,
        clock: Callable[[], float] = time.time,
        send_ahead: float = math.inf,
    ) -> None:
        """`clock`: wall-clock seconds, what the records' `due` headers are read against.
        `send_ahead`: how long before its due time a record is produced at the earliest
        (ECHO_SEND_AHEAD_MS): one handed over on arrival is on time, however long a lead its
        socket would like."""
        self._bus, self._store, self._leases, self._clock = bus, store, leases, clock
        self._send_ahead = send_ahead
        self._topic, self._partitions, self._pod = topic, partitions, pod
        self._sinks: dict[str, Sink] = {}
        self._leads: dict[str, float] = {}  # per session: how long before due its sink takes records
        self._delivered_seq: dict[str, int] = {}  # per session: the highest seq delivered
        self._consumer: Consumer | None = None
        self.partition: int | None = None
        self._held: DueQueue[EgressAudio] = DueQueue(clock)
        # per session with records held: how many, and the latest due time among them
        self._held_per_session: dict[str, tuple[int, float]] = {}

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
                metrics.EGRESS_LEASED.set(1)
                return True
        return False

    def _route(self) -> str:
        if self.partition is None:
            raise RuntimeError("no egress partition leased yet")
        return Route(pod=self._pod, partition=self.partition).encode()

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self.partition is not None:
            batch = self._store.batch()
            self._leases.drop_key(batch, Key.EGRESS_LEASE + str(self.partition))
            await batch.execute()
        metrics.EGRESS_LEASED.set(0)

    async def ready(self) -> None:
        if self.partition is None:
            metrics.EGRESS_LEASED.set(0)
            raise NoEgressPartition(f"all {self._partitions} egress partitions are leased by other pods")
        holder = await self._store.get(Key.EGRESS_LEASE + str(self.partition))
        metrics.EGRESS_LEASED.set(1 if holder == self._pod else 0)
        if holder != self._pod:
            raise NoEgressPartition(f"egress partition {self.partition} lease is held by {holder!r}")

    def attach(self, batch: StoreBatch, session_id: str, sink: Sink, *, lead: float = 0.0) -> None:
        """Deliver the session's egress to `sink`, `lead` seconds before each record is due (a
        paced socket writes it on time itself); its route is written with `batch`."""
        self._sinks[session_id] = sink
        self._leads[session_id] = lead
        if self.partition is not None:  # otherwise written once a partition is leased
            self._leases.hold_key(batch, Key.ROUTE + session_id, self._route())

    def detach(self, batch: StoreBatch, session_id: str, sink: Sink) -> None:
        """Stop delivering to `sink` and drop the route, unless another socket took the session here."""
        # `==`, not `is`: a sink is usually a bound method, and each `conn.method` is a new object
        if self._sinks.get(session_id) == sink:
            del self._sinks[session_id]
            self._leads.pop(session_id, None)
            self._delivered_seq.pop(session_id, None)
            self._leases.drop_key(batch, Key.ROUTE + session_id)

    async def run(self, retry_seconds: float) -> None:
        """Lease a partition if we have none yet, then deliver egress records until cancelled."""
        while self._consumer is None:
            await asyncio.sleep(retry_seconds)
            await self._claim()
        while True:
            for record in await self._consumer.getmany(timeout_ms=1000):
                try:
                    egress = EgressAudio.from_message(record.key, record.value, record.headers)
                except RecordError as exc:
                    log.warning("not an egress record: %s", exc, extra={"offset": record.offset})
                    continue
                session_id, due, now = egress.session_id, egress.due, self._clock()
                if due is not None:
                    due -= self._leads.get(session_id, 0.0)
                held = self._held_per_session.get(session_id)
                if held is not None:  # behind what the session has held, whatever its own due
                    when = max(now if due is None else due, held[1])
                    self._held_per_session[session_id] = (held[0] + 1, when)
                    self._held.push(when, egress)
                elif due is not None and due > now:
                    self._held_per_session[session_id] = (1, due)
                    self._held.push(due, egress)
                else:
                    await self._deliver(egress)

    async def run_held(self) -> None:
        """Write held records when they are due, until cancelled."""
        await self._held.run(self._deliver_due)

    async def _deliver_due(self, due: list[tuple[float, EgressAudio]]) -> None:
        for _, egress in due:
            session_id = egress.session_id
            count, last = self._held_per_session[session_id]
            if count == 1:
                del self._held_per_session[session_id]
            else:
                self._held_per_session[session_id] = (count - 1, last)
            await self._deliver(egress)  # lateness: against its own due

    async def _deliver(self, egress: EgressAudio) -> None:
        sink = self._sinks.get(egress.session_id)
        if sink is None:
            return  # the session moved or ended; its new pod gets what follows
        if self._seen(egress):
            return
        with contextlib.suppress(ConnectionError):
            await sink(egress)
        if egress.due is not None:  # against when it was to be handed over (and could be)
            lead = min(self._leads.get(egress.session_id, 0.0), self._send_ahead)
            metrics.EGRESS_LATENESS.observe(max(0.0, self._clock() - (egress.due - lead)))

    def _seen(self, egress: EgressAudio) -> bool:
        """Whether this record (by its seq, when it has one) was delivered to the session already."""
        if egress.seq is None:
            return False
        if egress.seq <= self._delivered_seq.get(egress.session_id, -1):
            return True
        self._delivered_seq[egress.session_id] = egress.seq
        return False
