"""Exotel's HTTP callbacks (docs/protocols/exotel.md), typed: the Passthru applet's (a GET query,
or a POST of JSON or a form, after a stream applet with `Stream[…]` keys or a JSON string under
`Stream`) and the StatusCallback's (a form POST).

`ExotelCallback.parse` takes the flat mapping any of those arrives as; every value is a string
(Exotel's numbers too) and bounded, and what voxbus does not use is ignored.
"""

import json
from collections.abc import Mapping
from typing import Any, Final

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from voxbus.common.carrier_events import first_error

_TEXT: Final = 128  # characters kept of a value


class CallbackError(ValueError):
    """Not a callback voxbus takes; the message says which field."""


class StreamInfo(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    stream_sid: str | None = Field(default=None, max_length=_TEXT, validation_alias="StreamSID")
    status: str | None = Field(default=None, max_length=64, validation_alias="Status")
    duration: str | None = Field(default=None, max_length=32, validation_alias="Duration")
    disconnected_by: str | None = Field(default=None, max_length=64, validation_alias="DisconnectedBy")


class ExotelCallback(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", coerce_numbers_to_str=True)

    call_sid: str = Field(min_length=1, max_length=_TEXT, validation_alias="CallSid")
    from_: str | None = Field(default=None, max_length=64, validation_alias=AliasChoices("CallFrom", "From"))
    to: str | None = Field(default=None, max_length=64, validation_alias=AliasChoices("CallTo", "To"))
    direction: str | None = Field(default=None, max_length=64, validation_alias="Direction")
    status: str | None = Field(default=None, max_length=64, validation_alias="Status")
    time: str | None = Field(
        default=None, max_length=64, validation_alias=AliasChoices("DateUpdated", "CurrentTime", "EndTime")
    )
    digits: str | None = Field(default=None, max_length=_TEXT)
    stream: StreamInfo | None = Field(default=None, validation_alias="Stream")

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "ExotelCallback":
        """`CallbackError` naming the field when `data` is not a callback of a call."""
        fields = dict(data)
        stream = {
            key[7:-1]: value
            for key, value in fields.items()
            if key.startswith("Stream[") and key.endswith("]")
        }
        given = fields.get("Stream")
        if isinstance(given, str):
            try:
                given = json.loads(given)
            except (ValueError, RecursionError):
                raise CallbackError("Stream: not JSON") from None
        if isinstance(given, dict):
            stream = {**given, **stream}
        if stream:
            fields["Stream"] = stream
        else:
            fields.pop("Stream", None)
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise CallbackError(first_error(exc, "body")) from None
