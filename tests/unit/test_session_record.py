"""The session record as API clients read it (`GET /api/audio/sessions/{id}`, close replies)."""

from voxbus.common.constants import SessionField
from voxbus.ingest.sessions import public_info

SESSION_ID = "0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a"


def test_a_failed_session_shows_its_reason() -> None:
    fields = {SessionField.STATUS: "error", SessionField.FINALIZED: "1", SessionField.ERROR: "bad bytes"}
    info = public_info(SESSION_ID, {**fields, SessionField.CLOSE_REASON: "bad bytes"})
    assert (info["status"], info["error"], info["close_reason"]) == ("error", "bad bytes", "bad bytes")
