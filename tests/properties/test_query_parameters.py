"""The query of every WebSocket path's connect request, each parameter absent, valid, or any text.
What the client sees: the connection is refused with the documented error (and close 1008), or it
opens with exactly the values it asked for (the defaults for those it left out); no other outcome,
and never a value outside the documented ones."""

from collections.abc import Mapping

import hypothesis.strategies as st
from hypothesis import given

from tests.properties.budget import examples
from tests.properties.clients import drive
from voxbus.common.client_messages import MAX_DELAY_MS, SESSION_FORMATS
from voxbus.common.constants import SAMPLE_RATES
from voxbus.common.settings import TELEPHONY_MODES
from voxbus.ingest.protocols.exotel import RATES as EXOTEL_RATES
from voxbus.ingest.sessions import CODEC_OF_FORMAT

_TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(("", " 16000", "16000 ", "1_6000", "+8000", "-1", "1e4", "0x10", "²", "١٦٠٠٠", "TRUE")),
    st.integers(0, 6000).map(lambda digits: "1" + "0" * digits),  # more digits than int() takes
)


def parameters(valid: Mapping[str, st.SearchStrategy[str]]) -> st.SearchStrategy[dict[str, str]]:
    """A query: each parameter of `valid` absent, one of its valid values, or any text."""
    return st.fixed_dictionaries(
        {}, optional={name: st.one_of(values, _TEXT) for name, values in valid.items()}
    )


def _values(values: object) -> st.SearchStrategy[str]:
    return st.sampled_from([str(value) for value in values])  # type: ignore[attr-defined]


SESSION = {
    "sample_rate": _values(SAMPLE_RATES),
    "channels": _values((1, 2)),
    "format": _values(SESSION_FORMATS),
    "echo": _values(("true", "false", "1", "0")),
    "delay_ms": st.integers(0, MAX_DELAY_MS).map(str),
    "user_id": st.text(min_size=1, max_size=30),
}


@examples(200)
@given(query=parameters(SESSION))
def test_session_query(query: dict[str, str]) -> None:
    outcome = drive("/api/ws/audio", query=query)
    if outcome.refused is not None:
        assert outcome.refused.code == 1008
        assert outcome.refused.reply.error in {
            "Invalid sample rate",
            "Invalid channels",
            "Invalid format",
            "Invalid echo",
            "Invalid delay_ms",
        }
        return
    (spec,) = outcome.connection.opened
    assert spec.format.rate in SAMPLE_RATES and spec.format.channels in (1, 2)
    assert spec.format.codec in CODEC_OF_FORMAT.values() or spec.format.codec in SESSION_FORMATS
    assert 0 <= spec.echo.delay_ms <= MAX_DELAY_MS
    canonical = {name: value for name, value in query.items() if value in _canonical(name)}
    if canonical == query:  # asked in the documented spelling: it gets exactly that
        assert str(spec.format.rate) == query.get("sample_rate", str(spec.format.rate))
        assert str(spec.format.channels) == query.get("channels", str(spec.format.channels))
        assert str(spec.echo.delay_ms) == query.get("delay_ms", "0")
        assert spec.echo.enabled == (query.get("echo", "false") in ("true", "1"))
        assert spec.user_id == query.get("user_id", "anonymous")


def _canonical(name: str) -> set[str]:
    if name == "delay_ms":
        return {str(ms) for ms in range(MAX_DELAY_MS + 1)}
    if name == "user_id":
        return {"alice", "anonymous"}
    options = {"sample_rate": SAMPLE_RATES, "channels": (1, 2), "format": SESSION_FORMATS}
    return {str(value) for value in options.get(name, ("true", "false", "1", "0"))}


@examples(150)
@given(query=parameters({"delay_ms": SESSION["delay_ms"], "sample_rate": SESSION["sample_rate"]}))
def test_echo_query(query: dict[str, str]) -> None:
    outcome = drive("/ws/audio", query=query)
    if outcome.refused is not None:
        assert (outcome.refused.code, outcome.refused.reply.error) == (1008, "Invalid parameter")
        return
    (spec,) = outcome.connection.opened
    assert spec.format.rate in SAMPLE_RATES and 0 <= spec.echo.delay_ms <= MAX_DELAY_MS


WEARABLE = {
    "codec": _values(("opus", "pcm")),
    "strip_header": _values(("true", "false", "1", "0")),
    "sample_rate": SESSION["sample_rate"],
    "user_id": st.text(min_size=1, max_size=300),
}


@examples(150)
@given(query=parameters(WEARABLE))
def test_wearable_query(query: dict[str, str]) -> None:
    outcome = drive("/ws", query=query)
    if outcome.refused is not None:
        assert (outcome.refused.code, outcome.refused.reply.error) == (1008, "Invalid parameter")
        return
    assert outcome.connection.opened == []  # a session opens at audio-start, or the first packet


@examples(150)
@given(
    path=st.sampled_from(("/ws/vonage", "/ws/exotel", "/ws/twilio")),
    query=parameters({"mode": _values(TELEPHONY_MODES), "sample-rate": _values(EXOTEL_RATES)}),
)
def test_carrier_query(path: str, query: dict[str, str]) -> None:
    outcome = drive(path, query=query)
    if outcome.refused is not None:
        assert outcome.refused.code == 1008
        assert outcome.refused.reply.error in {"Invalid mode", "Invalid sample rate"}
