"""Exotel and Twilio calls against separate `voxbus serve` processes over real Kafka and Redis:
two ingest and two telephony instances (plus a transcoder, a writer and an echo), the carriers'
webhooks alternating between the telephony instances, each call's media socket on its own ingest
instance. An Exotel call (PCM, record+echo) and a Twilio call (μ-law, record+echo) at once: each
recording is what its caller sent, each echo comes back whole in the carrier's framing with the
mark after its audio, and each call record (read from either instance) is complete."""

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import aiohttp
import numpy as np

from tests.exotel_carrier import ExotelStream, open_stream, open_twilio_stream
from tests.pipeline import read_wav, wait_finalized
from tests.servers import cluster, isolated_env, topic_prefix
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint
from voxbus.transcoder.samples import MULAW

SERVICES = ("telephony", "telephony", "transcoder", "writer", "echo")


async def _talk(stream: ExotelStream, audio: bytes) -> None:
    await stream.speak(audio[: len(audio) // 2])
    await stream.dtmf("3")
    await stream.speak(audio[len(audio) // 2 :])
    await stream.mark("end")
    await stream.until(lambda: "end" in stream.marks(), timeout=30)
    await stream.stop()


async def test_an_exotel_and_a_twilio_call_at_once_over_two_of_each_service(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("streams"),
        ECHO_DELAY_MS="300",
        TELEPHONY_MODE="record+echo",
    )
    pcm = np.random.default_rng(6).integers(-8000, 8000, 16000).astype("<i2").tobytes()  # 2 s at 8 kHz
    ulaw = np.random.default_rng(7).integers(0, 256, 16000).astype(np.uint8).tobytes()  # 2 s
    async with (
        cluster(env, tmp_path, ingests=2, services=SERVICES) as (
            ingest_a,
            ingest_b,
            telephony_1,
            telephony_2,
            *_,
        ),
        RedisStore(env["REDIS_URL"]) as store,
        aiohttp.ClientSession() as http,
    ):
        async with http.get(
            f"{telephony_1.url}/exotel/passthru", params={"CallSid": "EX-C", "CallFrom": "0980"}
        ) as response:
            assert response.status == 200
        form = {"CallSid": "CA-C", "From": "+15550001111", "CallStatus": "ringing"}
        async with http.post(f"{telephony_2.url}/twilio/voice", data=form) as response:
            stream_element = ET.fromstring(await response.text()).find("./Connect/Stream")
        assert stream_element is not None
        parameters = {parameter.attrib["name"]: parameter.attrib["value"] for parameter in stream_element}
        exotel = await open_stream(http, ingest_a.url, "EX-C")
        twilio = await open_twilio_stream(
            http, ingest_b.url.replace("http", "ws") + "/ws/twilio", "CA-C", parameters
        )
        await asyncio.gather(_talk(exotel, pcm), _talk(twilio, ulaw))
        async with http.post(
            f"{telephony_2.url}/exotel/status", data={"CallSid": "EX-C", "Status": "completed"}
        ) as response:
            assert response.status == 200
        async with http.post(
            f"{telephony_1.url}/twilio/status", data={"CallSid": "CA-C", "CallStatus": "completed"}
        ) as response:
            assert response.status == 204
        records = {}
        for call_id, telephony in (("EX-C", telephony_2), ("CA-C", telephony_1)):
            async with http.get(f"{telephony.url}/api/calls/{call_id}") as response:
                records[call_id] = await response.json()
        fields = {
            call_id: await wait_finalized(store, record["session_id"]) for call_id, record in records.items()
        }
        for call_id, telephony in (("EX-C", telephony_1), ("CA-C", telephony_2)):  # the other instance now
            async with http.get(f"{telephony.url}/api/calls/{call_id}") as response:
                records[call_id] = await response.json()

    for stream, sent in ((exotel, pcm), (twilio, ulaw)):
        assert b"".join(payload for _, payload in stream.media) == sent  # the whole echo, in order
        last_media = max(index for index, (_, body) in enumerate(stream.texts) if body["event"] == "media")
        assert (
            next(index for index, (_, body) in enumerate(stream.texts) if body["event"] == "mark")
            > last_media
        )
    # Exotel's framing: whole 20 ms frames (320 bytes), 200 ms to a message. A message leaves on
    # time with what has arrived: on this 2-core machine under a parallel load an echo now and then
    # comes after its message left (1 run in 3 with another test suite running beside it), and
    # the message is short. How late echoes may be is the timing tests' (test_exotel), not this one's
    sizes = [len(payload) for _, payload in exotel.media[1:-1]]
    assert all(size % 320 == 0 and 0 < size <= 3200 for size in sizes), sizes
    assert sizes.count(3200) >= 0.8 * len(sizes), sizes
    assert {len(payload) for _, payload in twilio.media} == {160}
    exotel_recording = read_wav(tmp_path / "audio" / fields["EX-C"]["file_path"])[0][:, 0]
    assert exotel_recording.tobytes() == pcm
    twilio_recording = read_wav(tmp_path / "audio" / fields["CA-C"]["file_path"])[0][:, 0]
    assert np.array_equal(twilio_recording, MULAW[np.frombuffer(ulaw, dtype=np.uint8)])
    for call_id, provider in (("EX-C", "exotel"), ("CA-C", "twilio")):
        record = records[call_id]
        assert (record["provider"], record["status"], record["dtmf"], record["mode"]) == (
            provider,
            "completed",
            "3",
            "record+echo",
        )
        assert record["recording"]["file_path"] == fields[call_id]["file_path"]
