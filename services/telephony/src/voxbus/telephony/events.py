"""The telephony service's consumer of `voxbus.events`: call events from ingest's media sockets
applied to the call records, and the greeting played when a call's socket opens.

Effects are idempotent (a history entry or digit added twice is one member of its set; a greeting
is marked once played), so the commit after them makes a crash replay harmless.
"""

import logging
from collections.abc import Mapping

from voxbus.common.bus.base import ConsumedRecord, TopicPartition
from voxbus.common.call_events import CallDtmf, CallMedia, decode_call_event
from voxbus.common.call_state import CallRecords
from voxbus.common.records import RecordError
from voxbus.telephony import metrics
from voxbus.telephony.prompts import Prompts

log = logging.getLogger(__name__)


class CallEventHandler:
    """The consumer group's handler (`BatchHandler`)."""

    def __init__(self, calls: CallRecords, prompts: Prompts) -> None:
        self._calls, self._prompts = calls, prompts

    async def handle(self, records: list[ConsumedRecord]) -> Mapping[TopicPartition, int]:
        offsets: dict[TopicPartition, int] = {}
        for record in records:
            offsets[record.tp] = record.offset + 1
            try:
                event = decode_call_event(record.value, record.headers)
            except RecordError as exc:
                log.warning("skipping a call event: %s", exc, extra={"offset": record.offset})
                continue
            if isinstance(event, CallMedia):
                await self._calls.media(event)
                await self._prompts.greet(event.session_id, event.rate, event.codec)
            elif isinstance(event, CallDtmf):
                await self._calls.dtmf(event)
            else:
                continue  # statuses are in the record already (the webhook wrote them); others aren't ours
            metrics.CALL_EVENTS.labels(type(event).__name__).inc()
        return offsets

    async def on_partitions_revoked(self, revoked: frozenset[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: frozenset[TopicPartition]) -> None:
        return None
