"""Vonage calls against separate `voxbus serve` processes over real Kafka and Redis: two ingest and
two telephony instances (plus a transcoder, a writer and an echo), the carrier simulator's
webhooks alternating between the telephony instances as a load balancer sends them, and each
call's media socket on its own ingest instance. Two callers at once, in record+echo mode with a
greeting and signed requests: each hears the greeting first, then itself on time; each recording
is what its caller sent; the call records (read from either instance) have the statuses, digits,
session and recording. Unsigned requests are refused by the processes that receive them."""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
import soundfile
from prometheus_client.parser import text_string_to_metric_families

from tests.audio import speech
from tests.helpers import eventually
from tests.pipeline import read_wav, wait_finalized
from tests.servers import Process, cluster, isolated_env, topic_prefix
from tests.vonage_carrier import FRAME_SECONDS, MediaSocket, VonageCarrier, signed
from voxbus.common.store.redis import RedisStore
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint
from voxbus.telephony.prompts import Greeting

RATE = 16000
FRAME = 640  # 20 ms of 16-bit mono at 16 kHz
SECRET = "vonage-signature-secret-for-tests"
OTHER_SECRET = "another-vonage-secret-not-the-one-set"
HOST_NAME = "http://calls.voxbus.test"  # what the NCCO names; the carrier routes it to an ingest
ECHO_DELAY_MS = 500
DELAY_TOLERANCE = 0.020
GREETING_RATE = 22050
GREETING_SECONDS = 1.0
SPEECH_SECONDS = 3.0
# echoes of frames sent this long after the greeting ended are timed: by then the pacer sends on
# the echo's schedule, not the greeting's
MARGIN_SECONDS = 0.1
SERVICES = ("telephony", "telephony", "transcoder", "writer", "echo")
STATUSES = ["started", "ringing", "answered", "completed"]


@dataclass
class Line:
    """The caller's side of a phone line: one 20 ms frame every 20 ms from connect to hang-up (an
    accumulated deadline: no drift), each frame unlike any other, the quiet ones too."""

    media: MediaSocket
    seed: int
    sent: list[bytes] = field(default_factory=list)
    _deadline: float | None = None

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def speech(self, voice: npt.NDArray[np.int16]) -> bytes:
        """`voice` with a little noise of this line's own."""
        noise = self._rng.integers(-40, 40, len(voice))
        noisy: npt.NDArray[np.int16] = np.clip(voice.astype(np.int32) + noise, -32768, 32767).astype("<i2")
        return noisy.tobytes()

    def quiet_frame(self) -> bytes:
        return self._rng.integers(-20, 20, FRAME // 2).astype("<i2").tobytes()

    async def send(self, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time()
        delay = self._deadline - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        assert frame not in self.media.sent_at, "every frame the caller sends is unique"
        self.media.sent_at[frame] = time.monotonic()
        await self.media.ws.send_bytes(frame)
        self.sent.append(frame)
        self._deadline += FRAME_SECONDS

    async def speak(self, pcm: bytes) -> None:
        for start in range(0, len(pcm), FRAME):
            await self.send(pcm[start : start + FRAME])

    async def quiet_for(self, seconds: float) -> None:
        for _ in range(round(seconds / FRAME_SECONDS)):
            await self.send(self.quiet_frame())

    async def quiet_until(self, heard: "asyncio.Task[None]", what: str, timeout: float = 30.0) -> None:
        """Quiet frames until `heard` is done (its failure is the call's)."""
        try:
            async with asyncio.timeout(timeout):
                while not heard.done():
                    await self.send(self.quiet_frame())
        except TimeoutError:
            raise AssertionError(f"not within {timeout:g} s: {what}") from None
        finally:
            if not heard.done():
                heard.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heard
        heard.result()


@dataclass(frozen=True)
class Caller:
    call_id: str
    ingest: Process  # where the carrier's media socket lands
    seed: int
    digits: str


@dataclass(frozen=True)
class Call:
    caller: Caller
    line: Line
    ncco: list[dict[str, Any]]
    setup_targets: list[str]  # where the answer and the first status webhooks went
    greeting_heard_at: float
    speech: tuple[int, int]  # the speech's frames in `line.sent`: [first, end)


async def place_call(
    carrier: VonageCarrier,
    setup: asyncio.Lock,
    caller: Caller,
    voice: npt.NDArray[np.int16],
    greeting_frames: int,
) -> Call:
    """A call from answer to hang-up: quiet while the greeting plays, then speech with the digits
    pressed halfway, quiet until the last word has come back, and the caller hangs up."""
    call_id = caller.call_id
    async with setup:  # so each call's own webhooks alternate, whatever the other call does
        before = len(carrier.webhook_targets)
        ncco = await carrier.answer(call_id)
        for status in STATUSES[:-1]:
            assert await carrier.event(call_id, status) == 204
        setup_targets = carrier.webhook_targets[before:]
    media = await carrier.connect(ncco, via=caller.ingest.url)
    line = Line(media, caller.seed)
    await line.quiet_until(
        asyncio.create_task(media.wait_frames(greeting_frames), name=f"{call_id}-greeting"),
        f"{call_id}: the greeting's {greeting_frames} frames",
    )
    greeting_heard_at = media.frames[greeting_frames - 1][0]
    await line.quiet_for(MARGIN_SECONDS)

    first = len(line.sent)
    pcm = line.speech(voice)
    half = len(pcm) // FRAME // 2 * FRAME
    await line.speak(pcm[:half])
    for digit in caller.digits:
        await media.dtmf(digit)
    await line.speak(pcm[half:])
    end = len(line.sent)

    async def last_word_back() -> None:
        while not any(frame == line.sent[end - 1] for _, frame in media.frames[-10:]):
            media.arrived.clear()
            await media.arrived.wait()

    await line.quiet_until(
        asyncio.create_task(last_word_back(), name=f"{call_id}-echo"),
        f"{call_id}: the echo of the last speech frame",
    )
    await media.hang_up()
    assert await carrier.event(call_id, "completed", duration="5") == 204
    return Call(caller, line, ncco, setup_targets, greeting_heard_at, (first, end))


@dataclass(frozen=True)
class Lateness:
    """What an ingest instance measured of its own timing, per frame: echo records handed to the
    pacer after their due time, and frames the pacer sent after their slot."""

    where: str
    late: dict[str, tuple[float, float]]  # histogram → (frames over DELAY_TOLERANCE, frames)

    def __str__(self) -> str:
        seen = (
            f"{name}: {late:g} of {total:g} over {DELAY_TOLERANCE * 1000:g} ms"
            for name, (late, total) in self.late.items()
        )
        return f"{self.where}: {'; '.join(seen)}"


async def ingest_lateness(http: aiohttp.ClientSession, ingest: Process) -> Lateness:
    async with http.get(f"{ingest.url}/metrics") as response:
        text = await response.text()
    late = {}
    for family in text_string_to_metric_families(text):
        if family.name in ("voxbus_ingest_egress_lateness_seconds", "voxbus_ingest_pacer_lateness_seconds"):
            buckets = {
                sample.labels["le"]: sample.value for sample in family.samples if "le" in sample.labels
            }
            late[family.name] = (buckets["+Inf"] - buckets[f"{DELAY_TOLERANCE:g}"], buckets["+Inf"])
    assert len(late) == 2, f"{ingest.name} {ingest.url} reports no lateness histograms"
    return Lateness(f"{ingest.name} {ingest.url}", late)


def assert_heard_greeting_then_echo(call: Call, greeting: bytes, lateness: Lateness) -> None:
    call_id, media, sent = call.caller.call_id, call.line.media, call.line.sent
    received = [frame for _, frame in media.frames]
    sizes = {len(frame) for frame in received}
    assert sizes == {FRAME}, f"{call_id}: frames of {sorted(sizes)} bytes"
    count = len(greeting) // FRAME
    assert b"".join(received[:count]) == greeting, f"{call_id}: the greeting is not what came first"

    # after the greeting the caller's own frames come back: a run of what it sent, in order, none
    # lost or doubled (echoes due while the greeting played were dropped: the prompt had the line)
    echoes = received[count:]
    assert echoes and echoes[0] in media.sent_at, f"{call_id}: after the greeting, no echo"
    start = sent.index(echoes[0])
    assert echoes == sent[start : start + len(echoes)], f"{call_id}: the echo is not the caller's audio"

    timed = [
        (arrived - media.sent_at[frame], frame)
        for arrived, frame in media.frames[count:]
        if media.sent_at[frame] >= call.greeting_heard_at + MARGIN_SECONDS
    ]
    first, end = call.speech
    assert {frame for _, frame in timed} >= set(sent[first:end]), f"{call_id}: the speech was not all echoed"
    delays = np.array([delay for delay, _ in timed])
    errors = np.abs(delays - ECHO_DELAY_MS / 1000)
    # Per frame, what the ingest measured of itself: seven processes, a broker and the callers
    # share two cores here, so the callers' own reads and sends wait for a core now and then, and
    # a frame's delay seen by them says as much about their scheduling as about voxbus (per-frame
    # timing at the caller is asserted where the machine can carry it: the single-process echo
    # tests). At the caller: the median frame on time, and none far off.
    for late, total in lateness.late.values():
        assert total >= len(delays) and late <= total * 0.02, f"{call_id}: {lateness}"
    assert np.median(errors) <= 0.005 and errors.max() <= 0.1, (
        f"{call_id}: echo delays {delays.min() * 1000:.1f}…{delays.max() * 1000:.1f} ms, the median "
        f"error {np.median(errors) * 1000:.1f} ms from {ECHO_DELAY_MS} ms. The ingest measured: {lateness}"
    )


async def call_record(http: aiohttp.ClientSession, base: str, call_id: str) -> dict[str, Any]:
    async with http.get(f"{base}/api/calls/{call_id}") as response:
        assert response.status == 200, await response.text()
        record: dict[str, Any] = await response.json()
        return record


@pytest.mark.usefixtures("steady_client")
async def test_two_calls_at_once_over_two_telephony_and_two_ingest_processes(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    wav = tmp_path / "greeting.wav"
    soundfile.write(wav, speech(GREETING_SECONDS, GREETING_RATE)[:, 0], GREETING_RATE, subtype="PCM_16")
    greeting = Greeting.load(wav, max_seconds=60.0).pcm(RATE)  # what telephony makes of the WAV
    voice = speech(SPEECH_SECONDS, RATE)[:, 0]  # espeak-ng blocks: made before the calls start
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("vonage"),
        HOST_NAME=HOST_NAME,
        TELEPHONY_MODE="record+echo",
        TELEPHONY_GREETING_WAV=str(wav),
        ECHO_DELAY_MS=str(ECHO_DELAY_MS),
        VONAGE_SIGNATURE_SECRET=SECRET,
    )
    async with (
        cluster(env, tmp_path, ingests=2, services=SERVICES) as processes,
        RedisStore(env["REDIS_URL"]) as store,
        aiohttp.ClientSession() as http,
    ):
        ingest_a, ingest_b, telephony_a, telephony_b = processes[:4]
        telephonies = [telephony_a.url, telephony_b.url]
        carrier = VonageCarrier(http, telephonies, SECRET)
        callers = [Caller("CALL-A", ingest_a, 11, "42"), Caller("CALL-B", ingest_b, 12, "907")]
        setup = asyncio.Lock()
        try:
            async with asyncio.TaskGroup() as group:
                placed = [
                    group.create_task(place_call(carrier, setup, caller, voice, len(greeting) // FRAME))
                    for caller in callers
                ]
        except ExceptionGroup as failed:  # one call failed: the other is cancelled
            reasons = "\n".join(repr(exc) for exc in failed.exceptions)
            logs = "\n\n".join(f"--- {process.name} {process.url}\n{process.log()}" for process in processes)
            raise AssertionError(f"{reasons}\n{logs}") from failed
        calls = [task.result() for task in placed]

        assert set(carrier.webhook_targets) == set(telephonies)
        for call in calls:
            assert call.setup_targets == telephonies * 2, "one call's webhooks reach both instances"
            connect = call.ncco[-1]
            assert connect["eventUrl"] == [f"{HOST_NAME}/vonage/event"]
            assert connect["authorization"] == {"type": "vonage"}
            (endpoint,) = connect["endpoint"]
            query = f"call={call.caller.call_id}&mode=record%2Becho"
            assert endpoint["uri"] == f"ws://calls.voxbus.test/ws/vonage?{query}"
        assert calls[0].line.sent[0] != calls[1].line.sent[0]

        for call in calls:
            lateness = await ingest_lateness(http, call.caller.ingest)
            assert_heard_greeting_then_echo(call, greeting, lateness)

        for call in calls:
            call_id, digits = call.caller.call_id, call.caller.digits
            session_id = (await call_record(http, telephony_a.url, call_id))["session_id"]
            assert session_id
            fields = await wait_finalized(store, session_id)
            recorded, rate = read_wav(tmp_path / "audio" / fields["file_path"])
            assert rate == RATE
            assert recorded[:, 0].tobytes() == b"".join(call.line.sent), f"{call_id}: the recording"

            async def complete(call_id: str = call_id, digits: str = digits) -> bool:
                record = await call_record(http, telephony_b.url, call_id)
                return (
                    record["dtmf"] == digits and bool(record["recording"]) and record["status"] == "completed"
                )

            # the digits come through voxbus.events, consumed by either instance
            await eventually(complete, what=f"{call_id}'s digits and recording in its record", timeout=30)
            record = await call_record(http, telephony_b.url, call_id)
            assert record == await call_record(http, telephony_a.url, call_id), "one record, either instance"
            assert (record["provider"], record["mode"], record["sample_rate"]) == (
                "vonage",
                "record+echo",
                RATE,
            )
            assert [entry["status"] for entry in record["statuses"]] == STATUSES
            assert record["status"] == "completed"
            assert record["dtmf"] == digits
            assert record["session_id"] == session_id
            assert record["recording"]["file_path"] == fields["file_path"]
            assert record["recording"]["duration_seconds"] == pytest.approx(
                len(call.line.sent) * FRAME_SECONDS
            )


async def test_unsigned_webhooks_and_media_sockets_are_refused_by_the_processes_that_receive_them(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    env = isolated_env(
        tmp_path,
        kafka_endpoint,
        redis_endpoint,
        topic_prefix("vonagesig"),
        HOST_NAME=HOST_NAME,
        VONAGE_SIGNATURE_SECRET=SECRET,
    )
    answer = {"to": "447700900001", "from": "447700900000", "uuid": "CALL-X", "conversation_uuid": "CON-X"}
    event = b'{"uuid": "CALL-X", "status": "started", "from": "447700900000", "to": "447700900001"}'
    json_type = {"Content-Type": "application/json"}
    badly_signed: tuple[dict[str, str], ...] = (
        {},
        signed(OTHER_SECRET),
        {"Authorization": "Bearer not-a-jwt"},
    )
    async with (
        cluster(env, tmp_path, ingests=2, services=("telephony", "telephony")) as processes,
        aiohttp.ClientSession() as http,
    ):
        ingests, telephonies = processes[:2], processes[2:]
        for telephony in telephonies:
            for headers in badly_signed:
                url = f"{telephony.url}/vonage/answer"
                async with http.get(url, params=answer, headers=headers) as response:
                    assert response.status == 401, await response.text()
                    assert (await response.json())["error"] == "Invalid signature"
            # unsigned, signed for another body, signed with another secret
            for headers in ({}, signed(SECRET, b"{}"), signed(OTHER_SECRET, event)):
                url = f"{telephony.url}/vonage/event"
                async with http.post(url, data=event, headers={**json_type, **headers}) as response:
                    assert response.status == 401, await response.text()
            async with http.get(f"{telephony.url}/api/calls/CALL-X") as response:
                assert response.status == 404, "a refused webhook records nothing"

        media = "/ws/vonage?call=CALL-X&mode=record"
        for ingest in ingests:
            for headers in badly_signed:
                with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                    await http.ws_connect(f"{ingest.url}{media}", headers=headers)
                assert refused.value.status == 401
            async with http.ws_connect(f"{ingest.url}{media}", headers=signed(SECRET)) as ws:
                assert not ws.closed  # the same socket, signed, is taken

        # the same webhooks, signed, are taken by either instance
        async with http.get(
            f"{telephonies[0].url}/vonage/answer", params=answer, headers=signed(SECRET)
        ) as response:
            assert response.status == 200
        async with http.post(
            f"{telephonies[1].url}/vonage/event", data=event, headers={**json_type, **signed(SECRET, event)}
        ) as response:
            assert response.status == 204
