"""Exotel Voicebot streams end to end, embedded: the stream simulator (tests/exotel_carrier.py)
opens `/ws/exotel`, sends `start`, speaks at real time, presses keys, marks and stops; voxbus
records the call exactly (PCM, and μ-law decoded with the G.711 table), echoes it in 3,200-byte
messages paced every 100 ms with marks after their audio, and refuses what is not Exotel's."""

import base64
import itertools
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.exotel_carrier import open_stream
from tests.helpers import eventually, rejected_messages
from tests.pipeline import read_wav, wait_finalized
from tests.servers import embedded_app, up_process
from voxbus.common.runtime import STORE
from voxbus.transcoder.samples import MULAW

BASIC = "Basic " + base64.b64encode(b"exo-key:exo-token").decode()


def pcm(seconds: float, rate: int = 8000, *, seed: int = 1) -> bytes:
    """Noise-like audio, unlike any other stretch of itself."""
    return np.random.default_rng(seed).integers(-8000, 8000, int(seconds * rate)).astype("<i2").tobytes()


async def call_of(http: aiohttp.ClientSession, base: str, call_id: str) -> dict[str, object]:
    found: list[dict[str, object]] = []

    async def linked() -> bool:
        async with http.get(f"{base}/api/calls/{call_id}") as response:
            call = await response.json() if response.status == 200 else {}
        found[:] = [call] if call.get("session_id") else []
        return bool(found)

    await eventually(linked, what=f"call {call_id} linked to its session", timeout=10)
    return found[0]


@pytest.mark.parametrize("mulaw", [False, True], ids=["pcm", "mulaw"])
async def test_a_stream_is_recorded_exactly_with_its_digits_and_its_mark_answered(
    tmp_path: Path, mulaw: bool
) -> None:
    sent = (
        np.random.default_rng(2).integers(0, 256, 8000 * 2).astype(np.uint8).tobytes() if mulaw else pcm(2.0)
    )
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        stream = await open_stream(http, base, "EXC-1", mulaw=mulaw)
        await stream.speak(sent[: len(sent) // 2])
        await stream.dtmf("7")
        await stream.speak(sent[len(sent) // 2 :])
        await stream.mark("done")
        await stream.until(lambda: "done" in stream.marks())
        await stream.stop()
        call = await call_of(http, base, "EXC-1")
        fields = await wait_finalized(app[STORE], str(call["session_id"]))
        async with http.get(f"{base}/api/calls/EXC-1") as response:
            call = await response.json()
    recorded = read_wav(tmp_path / "audio" / fields["file_path"])[0][:, 0]
    expected = MULAW[np.frombuffer(sent, dtype=np.uint8)] if mulaw else np.frombuffer(sent, dtype="<i2")
    assert np.array_equal(recorded, expected)
    assert (call["provider"], call["dtmf"], call["mode"]) == ("exotel", "7", "record")
    assert fields["close_reason"] == "call ended: callended"
    assert not stream.media  # record mode: nothing comes back


@pytest.mark.usefixtures("steady_client")
async def test_echo_comes_back_in_paced_3200_byte_messages_with_the_mark_after_its_audio(
    tmp_path: Path,
) -> None:
    """`voxbus up` in a process of its own, as a user runs it."""
    delay_ms = 500
    talk = pcm(5.0, seed=3)  # 24 intervals between messages to measure
    async with up_process(tmp_path, ECHO_DELAY_MS=str(delay_ms)) as server, aiohttp.ClientSession() as http:
        stream = await open_stream(http, server.url, "EXC-E", mode="echo")
        await stream.speak(talk)
        await stream.mark("end")
        await stream.until(lambda: "end" in stream.marks())
        await stream.stop()
    payloads = [payload for _, payload in stream.media]
    echoed = b"".join(payloads)
    assert (len(echoed), echoed[:64]) == (len(talk), talk[:64])
    assert echoed == talk  # all of it, in order, nothing else
    assert all(len(payload) % 320 == 0 for payload in payloads)
    assert [len(payload) for payload in payloads[1:-1]] == [3200] * (len(payloads) - 2)
    last_media = max(index for index, (_, body) in enumerate(stream.texts) if body["event"] == "media")
    mark_at = next(index for index, (_, body) in enumerate(stream.texts) if body["event"] == "mark")
    assert mark_at > last_media  # the mark after the audio before it
    arrivals = [arrived for arrived, _ in stream.media]
    # 3,200 bytes are 200 ms of 8 kHz 16-bit audio: one message every 200 ms. Over 23 intervals
    # a p99 is their maximum, and on this 2-core VM about one run in five has one message that
    # left 6-13 ms late (the ingest's pacer lateness shows it: the server's loop stalled, with no
    # collection or long callback to blame). So: p95 ≤ 5 ms and none over 20 ms; the p99 ≤ 5 ms
    # target is asserted per 20 ms frame, over 300 intervals, in the Twilio and Vonage echo tests
    # (the same pacer).
    jitter = [abs(b - a - 0.2) for a, b in itertools.pairwise(arrivals[1:])]
    assert float(np.percentile(jitter, 95)) <= 0.005 and max(jitter) <= 0.02, sorted(jitter)[-5:]
    first_delay = arrivals[0] - stream.sent_at[0]
    assert abs(first_delay - delay_ms / 1000) <= 0.02, first_delay


async def test_malformed_messages_are_counted_and_the_stream_goes_on(tmp_path: Path) -> None:
    audio = pcm(0.4)
    reasons = (
        "before_start",
        "bad_json",
        "unknown_event",
        "invalid",
        "bad_base64",
        "frame_size",
        "binary",
        "duplicate_start",
    )
    before = {reason: rejected_messages("exotel", reason) for reason in reasons}
    async with embedded_app(tmp_path) as (base, app), aiohttp.ClientSession() as http:
        ws = await http.ws_connect(f"{base.replace('http', 'ws')}/ws/exotel")
        await ws.send_str(json.dumps({"event": "media", "media": {"payload": "AAAA"}}))  # before start
        await ws.close()
        stream = await open_stream(http, base, "EXC-M")
        for text in ("{nope", '{"event": "surprise"}', '{"event": "dtmf", "dtmf": {"digit": "##"}}'):
            await stream.ws.send_str(text)
        await stream.send("media", media={"payload": "!!not base64!!"})
        await stream.send("media", media={"payload": "AA=="})  # 1 byte: half a sample
        await stream.ws.send_bytes(b"\x00\x01")
        await stream.send("start", start={"stream_sid": "X", "call_sid": "EXC-M"})
        await stream.speak(audio)
        await stream.stop()
        call = await call_of(http, base, "EXC-M")
        fields = await wait_finalized(app[STORE], str(call["session_id"]))
    assert read_wav(tmp_path / "audio" / fields["file_path"])[0][:, 0].tobytes() == audio
    assert {reason: rejected_messages("exotel", reason) - before[reason] for reason in reasons} == {
        "before_start": 1,
        "bad_json": 1,
        "unknown_event": 1,
        "invalid": 1,
        "bad_base64": 1,
        "frame_size": 1,
        "binary": 1,
        "duplicate_start": 1,
    }


async def test_a_stream_that_is_not_exotels_is_refused_before_it_opens(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, exotel_api_key="exo-key", exotel_api_token="exo-token") as (base, _),
        aiohttp.ClientSession() as http,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_stream(http, base, "EXC-A")
        assert refused.value.status == 401
        stream = await open_stream(http, base, "EXC-A", headers={"Authorization": BASIC})
        await stream.stop()
        async with http.ws_connect(
            f"{base.replace('http', 'ws')}/ws/exotel?sample-rate=44100",
            headers={"Authorization": BASIC},
        ) as ws:
            assert json.loads((await ws.receive()).data) == {
                "error": "Invalid sample rate",
                "valid_values": [8000, 16000, 24000],
            }
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
    async with (
        embedded_app(tmp_path, exotel_allowed_ips="10.0.0.0/8") as (base, _),
        aiohttp.ClientSession() as http,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await open_stream(http, base, "EXC-B")
        assert refused.value.status == 403


async def test_the_voicebot_applets_url_names_the_media_socket_at_the_public_host(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, host_name="https://voice.example.com", exotel_sample_rate=16000) as (base, _),
        aiohttp.ClientSession() as http,
    ):
        async with http.get(f"{base}/exotel/stream") as response:
            assert await response.json() == {"url": "wss://voice.example.com/ws/exotel?sample-rate=16000"}
        async with http.get(f"{base}/exotel/stream?mode=record+echo") as response:
            assert (await response.json())["url"].endswith("?sample-rate=16000&mode=record%2Becho")
        async with http.get(f"{base}/exotel/stream?mode=shout") as response:
            assert response.status == 400
