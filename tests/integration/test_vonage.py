"""Vonage calls end to end, embedded: the carrier simulator (tests/vonage_carrier.py) calls the
answer webhook, follows the NCCO to `/ws/vonage`, speaks, presses keys and posts events; voxbus
records the call sample for sample, echoes it on time, plays the greeting first, keeps the call
record, and refuses what is not signed when a secret is set."""

import asyncio
import itertools
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from tests.audio import speech
from tests.helpers import eventually, rejected_messages
from tests.pipeline import read_wav, wait_finalized
from tests.servers import embedded_app, up_process
from tests.vonage_carrier import VonageCarrier, signed
from voxbus.common.call_state import MAX_STATUSES
from voxbus.common.runtime import STORE
from voxbus.ingest.protocols.carrier import MAX_DTMF
from voxbus.telephony.prompts import Greeting

RATE = 16000
FRAME = 640


def caller_audio(seconds: float, *, seed: int = 3) -> bytes:
    """espeak-ng speech with a little noise, so no two 20 ms frames are alike."""
    voice = speech(seconds, RATE)[:, 0].astype(np.int32)
    noise = np.random.default_rng(seed).integers(-40, 40, len(voice))
    return np.clip(voice + noise, -32768, 32767).astype("<i2").tobytes()


async def test_a_call_is_recorded_sample_for_sample_with_its_statuses_and_digits(tmp_path: Path) -> None:
    audio = caller_audio(3.0)
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        carrier = VonageCarrier(http, [base])
        ncco = await carrier.answer("CALL-1")
        connect = ncco[-1]
        assert connect["action"] == "connect"
        assert connect["eventUrl"] == ["http://localhost:8000/vonage/event"]
        (endpoint,) = connect["endpoint"]
        assert endpoint["type"] == "websocket"
        assert endpoint["content-type"] == "audio/l16;rate=16000"
        assert endpoint["uri"] == "ws://localhost:8000/ws/vonage?call=CALL-1&mode=record"
        assert endpoint["headers"]["call_uuid"] == "CALL-1"
        for status in ("started", "ringing", "answered"):
            assert await carrier.event("CALL-1", status) == 204
        media = await carrier.connect(ncco, via=base)
        await media.speak(audio[: len(audio) // 2])
        await media.dtmf("4")
        await media.dtmf("2")
        await media.speak(audio[len(audio) // 2 :])
        await media.hang_up()
        assert await carrier.event("CALL-1", "completed", duration="3") == 204

        session_id = await session_of(http, base, "CALL-1")
        fields = await wait_finalized(app[STORE], session_id)
        recorded, rate = read_wav(tmp_path / "audio" / fields["file_path"])
        assert rate == RATE
        assert recorded[:, 0].tobytes() == audio

        async with http.get(f"{base}/api/calls/CALL-1") as response:
            call = await response.json()
        assert call["provider"] == "vonage"
        assert (call["from"], call["to"], call["direction"]) == ("447700900000", "447700900001", "inbound")
        assert [entry["status"] for entry in call["statuses"]] == [
            "started",
            "ringing",
            "answered",
            "completed",
        ]
        assert call["status"] == "completed"
        assert call["dtmf"] == "42"
        assert call["mode"] == "record"
        assert call["recording"]["file_path"] == fields["file_path"]
        assert call["recording"]["duration_seconds"] == pytest.approx(3.0)
        assert not media.frames  # record mode: nothing comes back


async def session_of(http: aiohttp.ClientSession, base: str, call_id: str, **headers: str) -> str:
    """The call's session id, once the telephony service linked it (from ingest's event)."""
    linked: list[str] = []

    async def link() -> bool:
        async with http.get(f"{base}/api/calls/{call_id}", headers=headers) as response:
            session_id = (await response.json()).get("session_id") if response.status == 200 else None
        linked[:] = [session_id] if session_id else []
        return bool(linked)

    await eventually(link, what=f"call {call_id} linked to its session", timeout=10)
    return linked[0]


def _frames(audio: bytes) -> list[bytes]:
    return [audio[start : start + FRAME] for start in range(0, len(audio), FRAME)]


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


@pytest.mark.usefixtures("steady_client")
async def test_echo_mode_plays_the_greeting_first_then_the_caller_in_exact_frames_on_time(
    tmp_path: Path,
) -> None:
    """`voxbus up` in a process of its own, as a user runs it (the carrier's clock is not the
    server's event loop)."""
    greeting_path = tmp_path / "greeting.wav"
    soundfile.write(greeting_path, speech(1.0, 22050), 22050, subtype="PCM_16")
    greeting = Greeting.load(greeting_path, max_seconds=60).pcm(RATE)
    delay_ms = 500
    silence = caller_audio(1.6, seed=5)  # a phone line carries audio from the start
    talk = caller_audio(6.0, seed=6)  # with the silence, 300+ intervals: a p99, not a maximum
    async with (
        up_process(
            tmp_path, TELEPHONY_GREETING_WAV=str(greeting_path), ECHO_DELAY_MS=str(delay_ms)
        ) as server,
        aiohttp.ClientSession() as http,
    ):
        carrier = VonageCarrier(http, [server.url])
        ncco = await carrier.answer("CALL-ECHO", mode="echo")
        media = await carrier.connect(ncco, via=server.url)
        await media.speak(silence)  # the greeting plays meanwhile; its echo is dropped
        heard_greeting = len(media.frames)
        await media.speak(talk)
        last = _frames(talk)[-1]
        async with asyncio.timeout(10):
            while not media.frames or media.frames[-1][1] != last:
                media.arrived.clear()
                await media.arrived.wait()
        await media.hang_up()

        session_id = await session_of(http, server.url, "CALL-ECHO")

        async def completed() -> bool:
            async with http.get(f"{server.url}/api/audio/sessions/{session_id}") as response:
                return bool((await response.json())["status"] == "completed")

        await eventually(completed, what="the echo call's session completed", timeout=20)
        async with http.get(f"{server.url}/api/calls/CALL-ECHO") as response:
            call = await response.json()
        async with http.get(f"{server.url}/api/audio/sessions/{session_id}") as response:
            session = await response.json()
    assert call["mode"] == "echo"
    assert call["recording"] is None  # echo mode keeps no audio
    assert (session["duration_seconds"], session["file_path"], session["segments"]) == (0, None, [])
    assert not list((tmp_path / "audio").iterdir())  # and leaves no file behind

    assert all(len(frame) == FRAME for _, frame in media.frames)
    greeting_frames = len(greeting) // FRAME
    assert heard_greeting >= greeting_frames
    assert b"".join(frame for _, frame in media.frames[:greeting_frames]) == greeting
    echoes = media.frames[greeting_frames:]
    sent = [frame for audio in (silence, talk) for frame in _frames(audio)]
    # from the first frame echoed once the greeting was over, every frame, in order, nothing else
    first = sent.index(echoes[0][1])
    assert [frame for _, frame in echoes] == sent[first:]
    assert first < len(_frames(silence))
    delays = [arrived - media.sent_at[frame] for arrived, frame in echoes]
    errors = [abs(delay - delay_ms / 1000) for delay in delays]
    assert _percentile(errors, 50) <= 0.005, sorted(errors)[len(errors) // 2]
    assert _percentile(errors, 99) <= 0.020, [round(error * 1000, 1) for error in sorted(errors)[-10:]]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(echoes)]
    jitter = [abs(gap - 0.020) for gap in gaps]
    assert _percentile(jitter, 99) <= 0.005, sorted(jitter)[-10:]


SECRET = "vonage-signature-secret-for-tests"


async def test_with_a_signature_secret_unsigned_or_forged_webhooks_and_sockets_are_refused(
    tmp_path: Path,
) -> None:
    async with (
        embedded_app(tmp_path, vonage_signature_secret=SECRET) as (base, _),
        aiohttp.ClientSession() as http,
    ):
        query = {"uuid": "CALL-S", "from": "447700900000", "to": "447700900001"}
        body = json.dumps({"uuid": "CALL-S", "status": "started"}).encode()
        json_type = {"Content-Type": "application/json"}
        forged = {
            "missing": {},
            "wrong secret": signed("not-the-secret-of-this-vonage-account", body),
            "not a JWT": {"Authorization": "Bearer not.a.jwt"},
            "body changed": signed(SECRET, body + b" "),
        }
        for what, headers in forged.items():
            if what != "body changed":  # an answer GET has no body to hash
                async with http.get(f"{base}/vonage/answer", params=query, headers=headers) as response:
                    assert response.status == 401, what
                    assert (await response.json())["error"] == "Invalid signature"
            async with http.post(
                f"{base}/vonage/event", data=body, headers={**json_type, **headers}
            ) as response:
                assert response.status == 401, what
        async with http.get(f"{base}/api/calls/CALL-S") as response:
            assert response.status == 404  # nothing refused was recorded

        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(f"{base}/ws/vonage?call=CALL-S")
        assert refused.value.status == 401
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                f"{base}/ws/vonage?call=CALL-S", headers=signed("not-the-secret-of-this-vonage-account")
            )
        assert refused.value.status == 401

        carrier = VonageCarrier(http, [base], secret=SECRET)
        ncco = await carrier.answer("CALL-S")
        assert ncco[-1]["authorization"] == {"type": "vonage"}
        assert await carrier.event("CALL-S", "answered") == 204
        media = await carrier.connect(ncco, via=base)
        await media.speak(caller_audio(0.2))
        await media.hang_up()
        async with http.get(f"{base}/api/calls/CALL-S") as response:
            call = await response.json()
        assert [entry["status"] for entry in call["statuses"]] == ["answered"]


async def test_malformed_messages_are_counted_and_the_call_goes_on(tmp_path: Path) -> None:
    audio = caller_audio(1.0)
    reasons = (
        "before_connected",
        "bad_json",
        "unknown_event",
        "invalid",
        "frame_size",
        "duplicate_connected",
    )
    before = {reason: rejected_messages("vonage", reason) for reason in reasons}
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base}/ws/vonage?call=CALL-M")
        await ws.send_bytes(audio[:FRAME])  # audio before the connected message
        await ws.send_str(json.dumps({"event": "websocket:dtmf", "digit": "1"}))  # text before it
        await ws.send_str(
            json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"})
        )
        await ws.send_str("{not json")
        await ws.send_str(json.dumps({"event": "websocket:surprise"}))
        await ws.send_str(json.dumps({"event": "websocket:dtmf", "digit": "key"}))
        await ws.send_str(
            json.dumps({"event": "websocket:connected", "content-type": "audio/l16;rate=16000"})
        )
        await ws.send_bytes(audio[:FRAME])
        await ws.send_bytes(audio[FRAME : FRAME + 101])  # half a sample: dropped
        await ws.send_bytes(audio[FRAME : FRAME + 100])  # a short frame: recorded
        await ws.send_bytes(audio[FRAME + 100 :])  # the rest in one oversized frame: recorded
        await ws.send_str(json.dumps({"event": "websocket:dtmf", "digit": "9", "duration": 100}))
        await ws.close()
        async with http.ws_connect(f"{base}/ws/vonage?call=CALL-M2&mode=loud") as refused:
            assert json.loads((await refused.receive()).data) == {
                "error": "Invalid mode",
                "valid_values": ["record", "echo", "record+echo"],
            }
            assert (await refused.receive()).type == aiohttp.WSMsgType.CLOSE
            assert refused.close_code == 1008
        session_id = await session_of(http, base, "CALL-M")
        fields = await wait_finalized(app[STORE], session_id)
        recorded = read_wav(tmp_path / "audio" / fields["file_path"])[0][:, 0]
        assert recorded.tobytes() == audio
        async with http.get(f"{base}/api/calls/CALL-M") as response:
            assert (await response.json())["dtmf"] == "9"
    counted = {reason: rejected_messages("vonage", reason) - before[reason] for reason in reasons}
    assert counted == {
        "before_connected": 2,
        "bad_json": 1,
        "unknown_event": 1,
        "invalid": 1,
        "frame_size": 3,
        "duplicate_connected": 1,
    }


async def test_the_seed_servers_ncco_helpers_answer_as_before(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, host_name="https://voice.example.com") as (base, _),
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{base}/ncco/talk") as response:
            talk = await response.json()
        assert len(talk) == 1
        assert talk[0]["action"] == "talk"
        assert talk[0]["text"]
        expected = {
            "wss://media.example.com/socket": {
                "type": "websocket",
                "uri": "wss://media.example.com/socket",
                "content-type": "audio/l16;rate=16000",
            },
            "ws://127.0.0.1:9000/ws": {
                "type": "websocket",
                "uri": "ws://127.0.0.1:9000/ws",
                "content-type": "audio/l16;rate=16000",
            },
            "sip:alice@sip.example.com": {"type": "sip", "uri": "sip:alice@sip.example.com"},
            "447700900000": {"type": "phone", "number": "447700900000"},
            "+447700900000": {"type": "phone", "number": "+447700900000"},
        }
        for endpoint, wanted in expected.items():
            async with http.get(f"{base}/ncco/connect", params={"endpoint": endpoint}) as response:
                assert response.status == 200, endpoint
                (action,) = await response.json()
            assert action == {
                "action": "connect",
                "eventUrl": ["https://voice.example.com/callback"],
                "endpoint": [wanted],
            }
        for bad in ("", "http://example.com", "44-77", "mailto:x@example.com"):
            async with http.get(f"{base}/ncco/connect", params={"endpoint": bad}) as response:
                assert response.status == 400, bad
                assert "Invalid endpoint" in (await response.json())["error"]
        for method, data in (("GET", None), ("POST", b'{"status": "completed"}'), ("POST", b"not json \xff")):
            async with http.request(method, f"{base}/callback", data=data) as response:
                assert response.status == 204, (method, data)


async def test_answer_as_a_json_post_with_a_mode_and_bad_webhooks_get_clear_errors(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, telephony_greeting_text="Please speak after the tone.") as (base, _),
        aiohttp.ClientSession() as http,
    ):
        body = {"uuid": "CALL-P", "from": "447700900000", "to": "447700900001", "conversation_uuid": "CON-P"}
        async with http.post(f"{base}/vonage/answer?mode=record%2Becho", json=body) as response:
            assert response.status == 200
            ncco = await response.json()
        assert ncco[0] == {"action": "talk", "text": "Please speak after the tone."}
        assert ncco[1]["endpoint"][0]["uri"].endswith("/ws/vonage?call=CALL-P&mode=record%2Becho")
        async with http.get(f"{base}/vonage/answer?uuid=CALL-R&mode=record+echo") as response:
            assert response.status == 200  # `+` left unescaped in the answer URL reads as a space
            assert (await response.json())[-1]["endpoint"][0]["uri"].endswith("mode=record%2Becho")
        async with http.get(f"{base}/vonage/answer?uuid=CALL-Q&mode=shout") as response:
            assert response.status == 400
            assert (await response.json()) == {
                "error": "Invalid mode",
                "valid_values": ["record", "echo", "record+echo"],
            }
        async with http.get(f"{base}/vonage/answer?from=447700900000") as response:
            assert response.status == 400
            assert "uuid" in (await response.json())["detail"]
        async with http.post(f"{base}/vonage/event", data=b"{not json") as response:
            assert response.status == 400
        async with http.get(f"{base}/api/calls/CALL-P") as response:
            call = await response.json()
        assert (call["mode"], call["conversation_id"], call["status"]) == ("record+echo", "CON-P", None)


async def test_calls_are_listed_newest_first_by_provider_and_status_page_by_page(tmp_path: Path) -> None:
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        carrier = VonageCarrier(http, [base])
        for number in range(5):
            await carrier.answer(f"CALL-{number}")
            await carrier.event(f"CALL-{number}", "completed" if number % 2 else "answered")
        seen: list[str] = []
        url = f"{base}/api/calls?limit=2&provider=vonage"
        while url:
            async with http.get(url) as response:
                page = await response.json()
            seen += [call["call_id"] for call in page["calls"]]
            cursor = page["next_cursor"]
            url = f"{base}/api/calls?limit=2&provider=vonage&cursor={cursor}" if cursor else ""
        assert seen == [f"CALL-{number}" for number in reversed(range(5))]
        async with http.get(f"{base}/api/calls?status=completed") as response:
            assert [call["call_id"] for call in (await response.json())["calls"]] == ["CALL-3", "CALL-1"]
        async with http.get(f"{base}/api/calls?provider=skype") as response:
            assert response.status == 422
        async with http.get(f"{base}/api/calls/CALL-404") as response:
            assert response.status == 404
            assert await response.json() == {"error": "Call not found", "call_id": "CALL-404"}


async def test_a_key_pressed_during_the_greeting_or_a_clear_over_http_stops_it(tmp_path: Path) -> None:
    greeting_path = tmp_path / "greeting.wav"
    soundfile.write(greeting_path, speech(4.0, RATE), RATE, subtype="PCM_16")
    async with (
        embedded_app(tmp_path, telephony_greeting_wav=greeting_path) as (base, _),
        aiohttp.ClientSession() as http,
    ):
        greeting = set(_frames(Greeting.load(greeting_path, max_seconds=60).pcm(RATE)))
        carrier = VonageCarrier(http, [base])
        for call_id, barge_in in (("CALL-KEY", "dtmf"), ("CALL-HTTP", "http")):
            media = await carrier.connect(await carrier.answer(call_id), via=base)
            await media.wait_frames(10)
            if barge_in == "dtmf":
                await media.dtmf("#")
            else:
                async with http.post(f"{base}/api/calls/{call_id}/clear") as response:
                    assert response.status == 200, await response.text()
            async with asyncio.timeout(5):
                while {"action": "clear"} not in media.texts:
                    media.arrived.clear()
                    await media.arrived.wait()
            await media.speak(caller_audio(1.0))  # a second of the line: the greeting stays stopped
            await media.hang_up()
            heard = [frame for _, frame in media.frames if frame in greeting]
            assert 10 <= len(heard) < len(greeting) // 2, (call_id, len(heard))
        async with http.post(f"{base}/api/calls/CALL-KEY/clear") as response:
            assert response.status == 409  # hung up: no socket to clear


async def test_a_call_keeps_at_most_its_bounded_digits_and_statuses(tmp_path: Path) -> None:
    before = rejected_messages("vonage", "too_many_dtmf")
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        carrier = VonageCarrier(http, [base])
        media = await carrier.connect(await carrier.answer("CALL-B"), via=base)
        for _ in range(MAX_DTMF + 5):
            await media.dtmf("7", duration=1)
        for number in range(MAX_STATUSES + 5):
            assert await carrier.event("CALL-B", f"status-{number}") == 204
        await media.hang_up()

        async def all_digits() -> bool:
            async with http.get(f"{base}/api/calls/CALL-B") as response:
                return len((await response.json())["dtmf"]) == MAX_DTMF

        await eventually(all_digits, what="the call record holds its digits", timeout=10)
        async with http.get(f"{base}/api/calls/CALL-B") as response:
            call = await response.json()
    assert rejected_messages("vonage", "too_many_dtmf") - before == 5
    assert len(call["statuses"]) == MAX_STATUSES
    assert call["status"] == f"status-{MAX_STATUSES + 4}"  # the latest is always kept


async def test_with_an_api_key_the_call_api_needs_it_and_vonage_stays_on_its_own_signature(
    tmp_path: Path,
) -> None:
    async with embedded_app(tmp_path, api_key="client-key") as (base, _), aiohttp.ClientSession() as http:
        carrier = VonageCarrier(http, [base])  # no secret: Vonage cannot present voxbus's key
        media = await carrier.connect(await carrier.answer("CALL-K"), via=base)
        await media.speak(caller_audio(0.2))
        await media.hang_up()
        async with http.get(f"{base}/api/calls/CALL-K") as response:
            assert response.status == 401
        assert await session_of(http, base, "CALL-K", **{"X-API-Key": "client-key"})
        async with http.get(f"{base}/api/calls", params={"token": "client-key"}) as response:
            assert [call["call_id"] for call in (await response.json())["calls"]] == ["CALL-K"]


async def test_json_nested_too_deep_neither_ends_a_call_nor_fails_a_webhook(tmp_path: Path) -> None:
    """json.loads raises RecursionError on a few thousand `[`: refused like any other bad JSON."""
    deep = "[" * 5000
    before = rejected_messages("vonage", "bad_json")
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        carrier = VonageCarrier(http, [base])
        media = await carrier.connect(await carrier.answer("CALL-D"), via=base)
        await media.ws.send_str(deep)
        await media.dtmf("5")
        await media.hang_up()

        async def pressed() -> bool:
            async with http.get(f"{base}/api/calls/CALL-D") as response:
                return (await response.json())["dtmf"] == "5"

        await eventually(pressed, what="the digit pressed after the deep message", timeout=10)
        async with http.post(f"{base}/callback", data=deep[:1500]) as response:
            assert response.status == 204  # seed: a body that is not JSON is logged, never a 500
        for webhook in ("answer", "event"):
            async with http.post(f"{base}/vonage/{webhook}", data=deep) as response:
                assert response.status == 400
                assert (await response.json())["detail"] == "the body is not JSON"
    assert rejected_messages("vonage", "bad_json") - before == 1


async def test_a_media_sockets_call_id_is_bounded_as_the_webhooks_is(tmp_path: Path) -> None:
    """A call id only the socket gives (its query or connected message) is held to the answer
    webhook's limit: /api/calls never lists a call that GET /api/calls/{id} cannot read."""
    connected = {"event": "websocket:connected", "content-type": "audio/l16;rate=16000"}
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{base}/ws/vonage?call={'q' * 5000}") as ws:
            await ws.send_str(json.dumps(connected))
            await ws.send_bytes(bytes(FRAME))
        async with http.ws_connect(f"{base}/ws/vonage") as ws:
            await ws.send_str(json.dumps({**connected, "call_uuid": "h" * 100_000}))
            await ws.send_bytes(bytes(FRAME))

        async def both_linked() -> bool:
            async with http.get(f"{base}/api/calls") as response:
                calls = (await response.json())["calls"]
            return len(calls) == 2 and all(call["session_id"] for call in calls)

        await eventually(both_linked, what="both sockets' calls recorded", timeout=10)
        async with http.get(f"{base}/api/calls") as response:
            listed = [call["call_id"] for call in (await response.json())["calls"]]
        for call_id in listed:
            async with http.get(f"{base}/api/calls/{call_id}") as response:
                assert response.status == 200, f"listed, not readable: a call id of {len(call_id)} characters"


async def test_a_status_the_carrier_sent_earlier_does_not_replace_a_later_one(tmp_path: Path) -> None:
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        carrier = VonageCarrier(http, [base])
        await carrier.answer("CALL-O")
        assert await carrier.event("CALL-O", "completed", timestamp="2026-12-02T03:00:09.000Z") == 204
        # a retried `answered` from before it, arriving after it (another instance, a retry)
        assert await carrier.event("CALL-O", "answered", timestamp="2026-12-02T03:00:02.000Z") == 204
        async with http.get(f"{base}/api/calls/CALL-O") as response:
            call = await response.json()
        assert call["status"] == "completed"
        assert [entry["status"] for entry in call["statuses"]] == ["completed", "answered"]  # as they came
        async with http.get(f"{base}/api/calls?status=answered") as response:
            assert (await response.json())["calls"] == []
