"""Golden state-store values other than the session hash (`test_session_record.py`): every key
prefix, the return route, and the messages on a session's pub/sub channels."""

import pytest

from voxbus.common.constants import Key
from voxbus.common.state import Route, SessionControl, SessionNotice, StateError

KEYS = {
    "SESSION": "voxbus:session:",
    "SESSIONS_ALL": "voxbus:sessions:all",
    "SESSIONS_BY_USER": "voxbus:sessions:user:",
    "SESSIONS_BY_TENANT": "voxbus:sessions:tenant:",
    "TENANT_KEY": "voxbus:tenant-key:",
    "TENANT_KEYS": "voxbus:tenant-keys",
    "ROUTE": "voxbus:route:",
    "EGRESS_LEASE": "voxbus:egress-lease:",
    "POD": "voxbus:pod:",
    "CONCURRENCY_LEASE": "voxbus:slot:",
    "CALL": "voxbus:call:",
    "CALL_HISTORY": "voxbus:call-history:",
    "CALL_DTMF": "voxbus:call-dtmf:",
    "CALLS_ALL": "voxbus:calls:all",
    "CALLS_BY_PROVIDER": "voxbus:calls:provider:",
    "GREETED": "voxbus:greeted:",
    "SESSION_CHANNEL": "voxbus:session-events:",
    "SESSION_CONTROL": "voxbus:session-control:",
    "SESSION_SLOTS": "voxbus:slots:sessions",
    "CONNECTION_SLOTS": "voxbus:slots:connections:",
    "REAP_AT": "voxbus:sessions:reap-at",
    "REAPING": "voxbus:reaping:",
}


def test_key_prefixes_golden() -> None:
    """Each prefix in `Key` has the value here (a key no longer used may go from both)."""
    keys = {name: value for name, value in vars(Key).items() if name.isupper()}
    assert keys == {name: KEYS.get(name) for name in keys}


def test_route_golden() -> None:
    route = Route(pod="ingest-7f9c-12", partition=41)
    assert route.encode() == "ingest-7f9c-12 41"
    assert Route.decode("ingest-7f9c-12 41") == route


def test_a_pod_name_with_spaces_reads_back_whole() -> None:
    route = Route(pod="edge pod 2", partition=0)
    assert route.encode() == "edge pod 2 0"
    assert Route.decode(route.encode()) == route


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "does not end in an egress partition number"),
        ("ingest-a", "does not end in an egress partition number"),
        ("ingest-a x", "does not end in an egress partition number"),
        ("ingest-a -1", "does not end in an egress partition number"),
        (" 3", "needs a pod name"),
    ],
)
def test_malformed_routes_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(StateError, match=reason):
        Route.decode(text)


def test_route_validation() -> None:
    with pytest.raises(StateError, match="partition must be >= 0"):
        Route(pod="ingest-a", partition=-1)


def test_pub_sub_messages_golden() -> None:
    assert [message.value for message in SessionControl] == ["close"]
    assert [message.value for message in SessionNotice] == ["connection-released", "finalized"]
    assert SessionControl.decode("close") is SessionControl.CLOSE
    assert SessionNotice.decode("connection-released") is SessionNotice.CONNECTION_RELEASED
    assert SessionNotice.decode("finalized") is SessionNotice.FINALIZED


@pytest.mark.parametrize("text", ["", "CLOSE", "finalized"])
def test_unknown_control_requests_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(StateError, match=f"not a SessionControl message: {text!r}"):
        SessionControl.decode(text)


def test_unknown_notices_are_refused_with_a_reason() -> None:
    with pytest.raises(StateError, match="not a SessionNotice message: 'close'"):
        SessionNotice.decode("close")
