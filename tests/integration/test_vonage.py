"""Vonage calls end to end, embedded: the carrier simulator (tests/vonage_carrier.py) calls the
answer webhook, follows the NCCO to `/ws/vonage`, speaks, presses keys and posts events; voxbus
records the call sample for sample, echoes it on time, plays the greeting first, keeps the call
record, and refuses what is not signed when a secret is set."""

from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.audio import speech
from tests.pipeline import read_wav, wait_finalized
from tests.servers import embedded_app
from tests.vonage_carrier import VonageCarrier
from voxbus.common.runtime import STORE

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

        async with http.get(f"{base}/api/calls/CALL-1") as response:
            call = await response.json()
        session_id = call["session_id"]
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
