"""Apache Kafka bus via aiokafka: idempotent acks=all producer, manual-commit group consumers."""

import asyncio
import contextlib
import functools
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener
from aiokafka import TopicPartition as KafkaTP
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from voxbus.common.bus import metrics
from voxbus.common.bus.base import (
    Bus,
    BusError,
    CommitFailed,
    ConsumedRecord,
    Consumer,
    Delivered,
    RebalanceListener,
    TopicPartition,
    partition_for,
)
from voxbus.common.records import BusMessage

log = logging.getLogger(__name__)

_TOPIC_ALREADY_EXISTS = 36
# aiokafka's default batch (16 KB) fills with ~20 ingest frames, and every send past a full batch
# waits on a timer: bigger batches halve the producer's CPU per frame
_MAX_BATCH_BYTES = 256 * 1024
# what a record carries besides its value (key, headers, batch framing), with room to spare
_RECORD_OVERHEAD_BYTES = 64 * 1024
_MAX_MESSAGE_BYTES = "max.message.bytes"  # a topic's record limit
_GATHER_BYTES = 1024 * 1024  # what a batching fetch waits for (its time limit comes first)


class KafkaBus(Bus):
    """One producer and one admin client per process; consumers are made on demand."""

    commit_is_a_request = True

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        replication_factor: int = 1,
        linger_ms: int = 5,
        client_id: str = "voxbus",
        max_value_bytes: int = 1024 * 1024,
    ) -> None:
        """`max_value_bytes`: the largest record value produced (a client's largest message: an
        audio chunk, or its echo). Kafka refuses records over about 1 MiB by default, producer and
        broker both; the producer and the topics voxbus creates take this much plus framing."""
        self._bootstrap = bootstrap_servers
        self._max_record_bytes = max_value_bytes + _RECORD_OVERHEAD_BYTES
        self._replication_factor = replication_factor
        self._client_id = client_id
        self._linger_ms = linger_ms
        self._producer = self._new_producer()
        self._renewal: asyncio.Task[None] | None = None
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id=client_id)
        self._started = False
        self._partition_counts: dict[str, int] = {}

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            max_batch_size=_MAX_BATCH_BYTES,
            max_request_size=self._max_record_bytes,
        )

    def _delivered(self, topic: str, delivery: "asyncio.Future[Any]") -> None:
        """After a failed delivery the idempotent producer's sequence on that partition is broken:
        every later record there fails (OutOfOrderSequenceNumber) until a new producer, with a new
        producer id, takes over. So the first failure starts a replacement."""
        if delivery.cancelled() or delivery.exception() is None:
            return
        metrics.PRODUCE_ERRORS.labels(topic, "delivery").inc()
        if not self._started:
            return
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.create_task(
                self._renew_producer(repr(delivery.exception())), name="kafka-producer-renewal"
            )

    async def _renew_producer(self, reason: str) -> None:
        fresh = self._new_producer()
        try:
            await fresh.start()
        except BaseException as exc:  # cancelled by close(), or the broker is away
            await fresh.stop()
            if not isinstance(exc, KafkaError):
                raise
            log.warning("cannot replace the producer yet", extra={"reason": repr(exc)})
            return  # the next failed delivery tries again
        stale, self._producer = self._producer, fresh
        log.warning("producer replaced after a failed delivery", extra={"reason": reason})
        await stale.stop()  # what it still held lands or fails, as it would have

    @property
    def bootstrap_servers(self) -> str:
        return self._bootstrap

    async def start(self) -> None:
        try:
            await self._admin.start()
            await self._producer.start()
        except KafkaError as exc:
            await self._producer.stop()
            await self._admin.close()
            raise BusError(f"Kafka at {self._bootstrap} is unreachable: {exc!r}") from exc
        self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            if self._renewal is not None:
                self._renewal.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._renewal
            await self._producer.stop()
            await self._admin.close()

    async def ping(self) -> None:
        try:
            await self._admin.describe_cluster()
        except KafkaError as exc:
            raise BusError(f"Kafka at {self._bootstrap} is unreachable: {exc!r}") from exc

    async def create_topics(self, partitions: Mapping[str, int]) -> None:
        existing = set(await self._admin.list_topics())
        wanted = [
            NewTopic(
                name=topic,
                num_partitions=count,
                replication_factor=self._replication_factor,
                topic_configs={_MAX_MESSAGE_BYTES: str(self._max_record_bytes)},
            )
            for topic, count in partitions.items()
            if topic not in existing
        ]
        if wanted:
            response = await self._admin.create_topics(wanted)
            for topic, code, *message in response.topic_errors:
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise BusError(f"cannot create topic {topic!r}: error {code} {message}")
        for topic in partitions:
            await self._leaders_elected(topic)
        for topic, count in partitions.items():
            have = await self.partition_count(topic)
            if have < count:
                log.warning("topic %s has %d partitions, fewer than the %d configured", topic, have, count)

    async def _leaders_elected(self, topic: str, timeout: float = 30.0) -> None:
        """Wait until every partition of a new topic has a leader: a consumer that asks for its
        offsets before that gets NotLeaderForPartition and may stall."""
        client = self._producer.client
        async with asyncio.timeout(timeout):
            while True:
                await client.force_metadata_update()
                partitions = client.cluster.partitions_for_topic(topic) or set()
                leaders = [client.cluster.leader_for_partition(KafkaTP(topic, p)) for p in partitions]
                if partitions and all(leader is not None and leader >= 0 for leader in leaders):
                    return
                await asyncio.sleep(0.1)

    async def partition_count(self, topic: str) -> int:
        partitions = await self._producer.partitions_for(topic)
        if not partitions:
            raise BusError(f"unknown topic {topic!r}")
        return len(partitions)

    async def record_limit(self, topic: str) -> int | None:
        """The topic's `max.message.bytes` (a topic made before voxbus set it may have Kafka's
        default, about 1 MiB) and this producer's request size, less framing. A record the broker
        refuses fails every later record of this producer to that partition (the idempotent
        producer's sequence breaks: OutOfOrderSequenceNumber), so callers must not send one."""
        wanted = ConfigResource(ConfigResourceType.TOPIC, topic, {_MAX_MESSAGE_BYTES: None})
        try:
            responses = await self._admin.describe_configs([wanted])
        except KafkaError as exc:
            raise BusError(f"cannot read the configuration of topic {topic!r}: {exc!r}") from exc
        limit = self._max_record_bytes
        for response in responses:
            for resource in response.resources:  # (error, message, type, name, entries)
                for entry in resource[4]:  # (name, value, read only, source, …)
                    if entry[0] == _MAX_MESSAGE_BYTES and entry[1] is not None:
                        limit = min(limit, int(entry[1]))
        return limit - _RECORD_OVERHEAD_BYTES

    async def send(
        self, topic: str, message: BusMessage, *, partition: int | None = None
    ) -> "asyncio.Future[Delivered]":
        known = self._partition_counts.get(topic)
        if known is None:
            known = self._partition_counts[topic] = await self.partition_count(topic)
            for stage in metrics.STAGES:  # shown as 0 until it happens, not as no data
                metrics.PRODUCE_ERRORS.labels(topic, stage)
        if partition is None:
            partition = partition_for(message.key, known)  # cached; aiokafka's own is uncached
        elif not 0 <= partition < known:
            raise BusError(f"topic {topic!r} has no partition {partition}")
        try:
            future: asyncio.Future[Delivered] = await self._producer.send(
                topic,
                value=message.value,
                key=message.key,
                partition=partition,
                headers=list(message.headers),
            )
        except KafkaError as exc:
            metrics.PRODUCE_ERRORS.labels(topic, "send").inc()
            raise BusError(f"cannot produce to {topic!r}: {exc!r}") from exc
        future.add_done_callback(functools.partial(self._delivered, topic))
        return future

    def group_consumer(
        self,
        topics: Sequence[str],
        *,
        group_id: str,
        listener: RebalanceListener | None = None,
        batch_ms: int = 0,
    ) -> Consumer:
        return _KafkaGroupConsumer(
            self._bootstrap, self._client_id, list(topics), group_id, listener, batch_ms=batch_ms
        )

    def partition_tail(self, topic: str, partition: int) -> Consumer:
        return _KafkaTailConsumer(self._bootstrap, self._client_id, TopicPartition(topic, partition))


class _ListenerAdapter(ConsumerRebalanceListener):  # type: ignore[misc]
    """Tells the group consumer when it joined (aiokafka calls `on_partitions_assigned` after
    every join, with an empty set too) and forwards both calls to the service's listener."""

    def __init__(self, consumer: "_KafkaGroupConsumer", listener: RebalanceListener | None) -> None:
        self._consumer = consumer
        self._listener = listener

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._consumer.in_group = False
        if self._listener is not None:
            await self._listener.on_partitions_revoked(_ours(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        if self._listener is not None:
            await self._listener.on_partitions_assigned(_ours(assigned))
        self._consumer.in_group = True


class _KafkaConsumer(Consumer):
    """What group and tail consumers share: the aiokafka consumer and record conversion."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._running = False

    async def stop(self) -> None:
        self._running = False
        await self._consumer.stop()

    def assignment(self) -> frozenset[TopicPartition]:
        return _ours(self._consumer.assignment())

    def position(self, tp: TopicPartition) -> int | None:
        state = self._state(tp)
        return int(state.position) if state is not None and state.has_valid_position else None

    def high_watermark(self, tp: TopicPartition) -> int | None:
        state = self._state(tp)
        return int(state.highwater) if state is not None and state.highwater is not None else None

    def _state(self, tp: TopicPartition) -> Any:
        """aiokafka's state of an assigned partition, or None. Its public `highwater()` reads this
        same state; `position()` is only async because it may wait for a reset, and a metric
        must not wait."""
        subscription = self._consumer._subscription.subscription
        assignment = subscription.assignment if subscription is not None else None
        kafka_tp = KafkaTP(tp.topic, tp.partition)
        if not self._running or assignment is None or kafka_tp not in assignment.tps:
            return None
        return assignment.state_value(kafka_tp)

    async def getmany(self, *, timeout_ms: int = 1000, max_records: int = 500) -> list[ConsumedRecord]:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return [
            ConsumedRecord(
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                key=record.key,
                value=record.value if record.value is not None else b"",
                headers=tuple(record.headers),
                timestamp_ms=record.timestamp,
            )
            for tp in sorted(batches, key=lambda tp: (tp.topic, tp.partition))
            for record in batches[tp]
        ]


class _KafkaGroupConsumer(_KafkaConsumer):
    def __init__(
        self,
        bootstrap: str,
        client_id: str,
        topics: list[str],
        group_id: str,
        listener: RebalanceListener | None,
        *,
        batch_ms: int,
    ) -> None:
        # a fetch is answered once it holds _GATHER_BYTES or batch_ms passed: a consumer whose
        # every batch costs a fixed amount (store writes, a produce, the loop's wake-ups) takes
        # records in fewer, fuller batches
        gather = {"fetch_min_bytes": _GATHER_BYTES, "fetch_max_wait_ms": batch_ms} if batch_ms else {}
        super().__init__(
            AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                group_id=group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                isolation_level="read_committed",
                heartbeat_interval_ms=1000,
                **gather,
            )
        )
        self._topics = topics
        self._listener = listener
        self.in_group = False  # set by the listener adapter on every join, cleared on revocation

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise BusError(f"cannot start consumer: {exc!r}") from exc
        self._consumer.subscribe(topics=self._topics, listener=_ListenerAdapter(self, self._listener))
        self._running = True

    async def stop(self) -> None:
        self.in_group = False
        await super().stop()

    def joined(self) -> bool:
        return self.in_group and all(self.position(tp) is not None for tp in self.assignment())

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        try:
            await self._consumer.commit({KafkaTP(tp.topic, tp.partition): o for tp, o in offsets.items()})
        except (CommitFailedError, IllegalStateError) as exc:  # rebalanced, or never assigned
            raise CommitFailed(str(exc)) from exc
        except KafkaError as exc:
            raise BusError(f"commit failed: {exc!r}") from exc


class _KafkaTailConsumer(_KafkaConsumer):
    def __init__(self, bootstrap: str, client_id: str, tp: TopicPartition) -> None:
        super().__init__(
            AIOKafkaConsumer(
                bootstrap_servers=bootstrap,
                client_id=client_id,
                group_id=None,
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
        )
        self._tp = KafkaTP(tp.topic, tp.partition)

    async def start(self) -> None:
        try:
            await self._consumer.start()
        except KafkaError as exc:
            raise BusError(f"cannot start consumer: {exc!r}") from exc
        self._consumer.assign([self._tp])
        await self._consumer.seek_to_end(self._tp)
        await self._consumer.position(self._tp)  # resolve "end" now, not at the first fetch
        self._running = True

    async def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        raise BusError("a partition tail has no group to commit to")

    def joined(self) -> bool:
        return self.position(TopicPartition(self._tp.topic, self._tp.partition)) is not None


def _ours(partitions: Any) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(tp.topic, tp.partition) for tp in partitions)
