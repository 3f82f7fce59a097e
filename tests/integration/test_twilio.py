"""Twilio Media Streams end to end, embedded: the voice webhook's TwiML (built with the `twilio`
package) connects the call to `/ws/twilio`; a simulated Twilio stream follows it, speaks μ-law at
real time, presses a key, marks and stops; voxbus records the call exactly (decoded with the G.711
table), echoes it in 160-byte frames every 20 ms with the mark after its audio, records status
callbacks, and refuses what Twilio did not sign when a token is set."""

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from twilio.request_validator import RequestValidator

from tests.exotel_carrier import open_twilio_stream
from tests.helpers import eventually
from tests.pipeline import read_wav, wait_finalized
from tests.servers import embedded_app, up_process
from voxbus.common.runtime import STORE
from voxbus.transcoder.samples import MULAW

TOKEN = "twilio-auth-token-for-tests"


def mulaw(seconds: float, *, seed: int = 4) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, int(seconds * 8000)).astype(np.uint8).tobytes()


async def answer(
    http: aiohttp.ClientSession,
    base: str,
    call_sid: str,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> tuple[str, dict[str, str]]:
    """The voice webhook, as Twilio posts it: the TwiML's stream URL and parameters."""
    form = {
        "CallSid": call_sid,
        "From": "+15550001111",
        "To": "+15550002222",
        "Direction": "inbound",
        "CallStatus": "ringing",
    }
    async with http.post(f"{base}/twilio/voice{query}", data=form, headers=headers or {}) as response:
        assert response.status == 200, await response.text()
        assert response.content_type == "text/xml"
        twiml = ET.fromstring(await response.text())
    stream = twiml.find("./Connect/Stream")
    assert stream is not None
    return stream.attrib["url"], {parameter.attrib["name"]: parameter.attrib["value"] for parameter in stream}


async def test_a_call_through_twiml_and_its_stream_is_recorded_exactly(tmp_path: Path) -> None:
    sent = mulaw(2.0)
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        url, parameters = await answer(http, base, "CA-1")
        assert url == "ws://localhost:8000/ws/twilio?" or url.startswith("ws://localhost:8000/ws/twilio")
        assert parameters == {"mode": "record", "call": "CA-1"}
        stream = await open_twilio_stream(http, base.replace("http", "ws") + "/ws/twilio", "CA-1", parameters)
        await stream.speak(sent[:8000])
        await stream.dtmf("9")
        await stream.speak(sent[8000:])
        await stream.mark("done")
        await stream.until(lambda: "done" in stream.marks())
        await stream.stop()
        async with http.post(
            f"{base}/twilio/status",
            data={
                "CallSid": "CA-1",
                "CallStatus": "completed",
                "Timestamp": "Wed, 02 Dec 2026 04:00:09 +0000",
            },
        ) as response:
            assert response.status == 204

        async def linked() -> bool:
            async with http.get(f"{base}/api/calls/CA-1") as response:
                return bool((await response.json()).get("session_id"))

        await eventually(linked, what="the call linked to its session", timeout=10)
        async with http.get(f"{base}/api/calls/CA-1") as response:
            call = await response.json()
        fields = await wait_finalized(app[STORE], call["session_id"])
    recorded = read_wav(tmp_path / "audio" / fields["file_path"])[0][:, 0]
    assert np.array_equal(recorded, MULAW[np.frombuffer(sent, dtype=np.uint8)])
    assert (call["provider"], call["dtmf"], call["from"], call["status"]) == (
        "twilio",
        "9",
        "+15550001111",
        "completed",
    )
    assert [entry["status"] for entry in call["statuses"]] == ["ringing", "completed"]
    assert stream.ids() == {"streamSid"}  # Twilio's spelling back


@pytest.mark.usefixtures("steady_client")
async def test_echo_comes_back_in_160_byte_frames_every_20_ms_with_the_mark_after_its_audio(
    tmp_path: Path,
) -> None:
    talk = mulaw(6.0, seed=5)  # 299 intervals: enough that one late frame is not the p99
    async with up_process(tmp_path, ECHO_DELAY_MS="500") as server, aiohttp.ClientSession() as http:
        _, parameters = await answer(http, server.url, "CA-E", query="?mode=echo")
        stream = await open_twilio_stream(
            http, server.url.replace("http", "ws") + "/ws/twilio", "CA-E", parameters
        )
        await stream.speak(talk)
        await stream.mark("end")
        await stream.until(lambda: "end" in stream.marks())
        await stream.stop()
    payloads = [payload for _, payload in stream.media]
    assert b"".join(payloads) == talk
    assert {len(payload) for payload in payloads} == {160}
    last_media = max(index for index, (_, body) in enumerate(stream.texts) if body["event"] == "media")
    assert next(index for index, (_, body) in enumerate(stream.texts) if body["event"] == "mark") > last_media
    arrivals = [arrived for arrived, _ in stream.media]
    jitter = [abs(b - a - 0.02) for a, b in itertools.pairwise(arrivals)]
    late = [(index, round(value * 1000, 1)) for index, value in enumerate(jitter) if value > 0.004]
    assert float(np.percentile(jitter, 99)) <= 0.005, late


async def test_with_an_auth_token_what_twilio_did_not_sign_is_refused(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, twilio_auth_token=TOKEN, host_name="https://voice.example.com") as (base, _),
        aiohttp.ClientSession() as http,
    ):
        form = {"CallSid": "CA-S", "CallStatus": "ringing"}
        validator = RequestValidator(TOKEN)
        for signature in (
            "",
            "not-a-signature",
            validator.compute_signature("https://voice.example.com/twilio/status", form),
        ):
            async with http.post(
                f"{base}/twilio/voice", data=form, headers={"X-Twilio-Signature": signature}
            ) as response:
                assert response.status == 401, signature
        async with http.get(f"{base}/api/calls/CA-S") as response:
            assert response.status == 404
        good = validator.compute_signature("https://voice.example.com/twilio/voice", form)
        async with http.post(
            f"{base}/twilio/voice", data=form, headers={"X-Twilio-Signature": good}
        ) as response:
            assert response.status == 200
            assert "wss://voice.example.com/ws/twilio" in await response.text()
        socket = base.replace("http", "ws") + "/ws/twilio"
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(socket)
        assert refused.value.status == 401
        signature = validator.compute_signature("wss://voice.example.com/ws/twilio", {})
        async with http.ws_connect(socket, headers={"X-Twilio-Signature": signature}) as ws:
            assert not ws.closed
