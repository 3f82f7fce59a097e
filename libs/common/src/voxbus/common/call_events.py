"""The events topic's call records (docs/architecture.md, the bus): what happened to a telephony
call, keyed by the carrier's call id so one call's events stay in order on one partition.

- `CallStatus`: the carrier reported a status (telephony, from its event webhook).
- `CallMedia`: the call's media socket opened a session (ingest, from the carrier's first message).
- `CallDtmf`: the caller pressed a key (ingest, from the media socket).

The telephony service consumes them: media links the call to its session and plays the greeting,
DTMF is added to the call record. One small frozen class each, a compact JSON value, the type in
the `t` header as on every record; `decode_call_event` leaves other records (`finalized`) alone.
"""

import json
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Final, Self

from voxbus.common.constants import Header, RecordType
from voxbus.common.records import BusMessage, RecordError


@dataclass(frozen=True, slots=True, kw_only=True)
class _CallEvent:
    _type: ClassVar[RecordType]
    call_id: str
    provider: str
    at: float  # wall-clock seconds

    def to_message(self) -> BusMessage:
        body = json.dumps(asdict(self), separators=(",", ":"), sort_keys=True).encode("utf-8")
        return BusMessage(
            key=self.call_id.encode("utf-8"),
            value=body,
            headers=((Header.TYPE, self._type.value.encode("ascii")),),
        )

    @classmethod
    def from_value(cls, value: bytes) -> Self:
        try:
            body = json.loads(value)
            return cls(**body)
        except (ValueError, TypeError) as exc:
            raise RecordError(f"malformed {cls._type} record: {exc}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStatus(_CallEvent):
    _type: ClassVar[RecordType] = RecordType.CALL_STATUS
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMedia(_CallEvent):
    _type: ClassVar[RecordType] = RecordType.CALL_MEDIA
    session_id: str
    rate: int
    mode: str
    codec: str = "pcm_s16le"  # what the socket carries, and prompts to it must be in (or "mulaw")


@dataclass(frozen=True, slots=True, kw_only=True)
class CallDtmf(_CallEvent):
    _type: ClassVar[RecordType] = RecordType.CALL_DTMF
    session_id: str
    digit: str
    duration_ms: int


CallEvent = CallStatus | CallMedia | CallDtmf

_DECODERS: Final[dict[bytes, type[CallEvent]]] = {
    RecordType.CALL_STATUS.value.encode(): CallStatus,
    RecordType.CALL_MEDIA.value.encode(): CallMedia,
    RecordType.CALL_DTMF.value.encode(): CallDtmf,
}


def decode_call_event(value: bytes, headers: Any) -> CallEvent | None:
    """The call event in a record of the events topic; None for any other record there;
    `RecordError` for a call event that does not parse."""
    for name, header in headers:
        if name == Header.TYPE:
            decoder = _DECODERS.get(header)
            return None if decoder is None else decoder.from_value(value)
    return None
