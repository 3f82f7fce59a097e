"""Reading a carrier's JSON text messages: one `{"event": …}` object each, chosen by its
`event`, validated by that event's model; and a refusal that says why in a short `reason` (for
metrics: `bad_json`, `unknown_event`, `invalid`) and a text (for logs). Vonage's media socket
and the Exotel/Twilio envelope read their messages with it."""

import json
from collections.abc import Mapping
from typing import Final, TypeVar

from pydantic import BaseModel, ValidationError

Event = TypeVar("Event", bound=BaseModel)


# every `CarrierMessageError.reason` (here, in stream_messages and in vonage_messages)
CARRIER_MESSAGE_REASONS: Final = (
    "invalid",
    "bad_json",
    "unknown_event",
    "too_large",
    "bad_base64",
    "content_type",
)


class CarrierMessageError(ValueError):
    """Not a carrier message voxbus takes; `reason` labels it for metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def first_error(exc: ValidationError, default: str = "message") -> str:
    """The first thing pydantic found wrong, as `where: what`."""
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or default
    return f"{where}: {error['msg']}"


def validated(model: type[Event], data: object, *, what: str) -> Event:
    """`data` as `model`, or `CarrierMessageError("invalid")` naming `what` and the field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise CarrierMessageError("invalid", f"{what}: {first_error(exc)}") from None


def parse_event(text: str, events: Mapping[str, type[Event]]) -> Event:
    """The message in `text`, by its `event`; `CarrierMessageError` when it is none of `events`."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested past the parser's depth
        raise CarrierMessageError("bad_json", f"not JSON: {exc!r}"[:200]) from None
    kind = data.get("event") if isinstance(data, dict) else None
    model = events.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise CarrierMessageError("unknown_event", f"unknown event {str(kind)[:64]!r}")
    return validated(model, data, what=str(kind))
