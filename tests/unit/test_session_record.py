"""The session record as API clients read it (`GET /api/audio/sessions/{id}`, close replies)."""

from voxbus.common.constants import SessionField
from voxbus.ingest.sessions import public_info

SESSION_ID = "0b7e9a52-5a43-4a57-9a8e-7f3c1d2e4b5a"


def test_a_failed_session_shows_its_reason() -> None:
    fields = {SessionField.STATUS: "error", SessionField.FINALIZED: "1", SessionField.ERROR: "bad bytes"}
    info = public_info(SESSION_ID, {**fields, SessionField.CLOSE_REASON: "bad bytes"})
    assert (info["status"], info["error"], info["close_reason"]) == ("error", "bad bytes", "bad bytes")


def test_a_close_racing_the_failure_does_not_hide_it() -> None:
    # the close read `active`, the writer recorded the failure, then the close wrote `closing`
    fields = {
        SessionField.STATUS: "closing",
        SessionField.CLOSE_REASON: "client",
        SessionField.FINALIZED: "1",
    }
    assert public_info(SESSION_ID, {**fields, SessionField.ERROR: "bad bytes"})["status"] == "error"
    assert public_info(SESSION_ID, fields)["status"] == "completed"
    assert public_info(SESSION_ID, {**fields, SessionField.FINALIZED: "0"})["status"] == "closing"
