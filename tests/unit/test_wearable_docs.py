"""The wearable `error` events the docs quote for refusals every protocol shares are the events
the server sends (`WyomingError.from_reply`: the reply's fields in `text`)."""

import json
import re
from pathlib import Path

import pytest

from voxbus.common.client_messages import ErrorReply, InternalError, InvalidApiKey, InvalidWearableParameter
from voxbus.common.wyoming_events import WyomingError

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "docs" / "api.md", ROOT / "docs" / "protocols" / "wyoming.md"]
_ERROR_EVENT = re.compile(r'`(\{"type": "error", "data": \{.*?\}\})`')
SHARED: list[ErrorReply] = [InvalidWearableParameter(), InvalidApiKey(), InternalError()]


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_quoted_error_events_of_shared_refusals_are_what_the_server_sends(page: Path) -> None:
    sent = {event.data.code: event.to_wire() for event in map(WyomingError.from_reply, SHARED)}
    found = _ERROR_EVENT.findall(page.read_text(encoding="utf-8"))
    quoted = [json.loads(event) for event in found if "…" not in event]  # a template is no example
    wrong = [
        (event, json.loads(sent[event["data"]["code"]]))
        for event in quoted
        if event["data"]["code"] in sent and event != json.loads(sent[event["data"]["code"]])
    ]
    assert wrong == []
