"""The `/test` page in a real browser: Debian's `chromium`, headless, driven by Playwright, its
microphone a fake device that plays espeak-ng speech. A person's session: Start, speak a few
seconds, Stop; the server's WAV holds the speech, the page shows the counters and the download
link. Echo plays back (the page's echo meter moves), and seed 2's "Test Audio WebSocket" button
logs what came back. Embedded, and against separate processes over Kafka and Redis."""

import contextlib
import io
import os
import time
from pathlib import Path

import aiohttp
import numpy as np
import numpy.typing as npt
import pytest
import soundfile
from playwright.async_api import Browser, Page

from tests.audio import speech, wav_bytes
from tests.browser import browser as real_browser
from tests.browser import offline
from tests.servers import cluster, embedded, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

RATE = 16000
SOURCE_SECONDS = 8.0
STREAM_SECONDS = 4.0
ARTIFACTS = Path(os.environ.get("VOXBUS_TEST_ARTIFACTS", Path(__file__).parents[2] / ".cache" / "artifacts"))


def browser(speech_wav: Path) -> contextlib.AbstractAsyncContextManager[Browser]:
    """The browser with a fake microphone that plays `speech_wav` (looped), allowed at once."""
    return real_browser(
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={speech_wav}",
        "--autoplay-policy=no-user-gesture-required",
    )


@pytest.fixture
def source(tmp_path: Path) -> tuple[Path, npt.NDArray[np.float64]]:
    """The fake microphone's file (48 kHz, as a sound card gives) and the same speech at RATE."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # the page's screenshots
    path = tmp_path / "speech.wav"
    path.write_bytes(wav_bytes(speech(SOURCE_SECONDS, 48000), 48000))
    return path, speech(SOURCE_SECONDS, RATE)[:, 0].astype(np.float64)


def best_ncc(recorded: npt.NDArray[np.float64], looped: npt.NDArray[np.float64]) -> float:
    """The highest normalized cross-correlation of `recorded` with any stretch of `looped` (the
    fake microphone loops its file from wherever the page started listening)."""
    period = len(looped)
    clip = recorded[: period - 1]
    reference = np.concatenate([looped, looped])
    size = 1 << int(np.ceil(np.log2(len(reference) + len(clip))))
    dots = np.fft.irfft(np.fft.rfft(reference, size) * np.conj(np.fft.rfft(clip, size)), size)[:period]
    energy = np.concatenate([[0.0], np.cumsum(reference**2)])
    windows = energy[len(clip) : len(clip) + period] - energy[:period]
    scores = dots / (np.sqrt(windows * np.sum(clip**2)) + 1e-9)
    return float(np.max(scores))


async def open_page(browser_: Browser, base: str) -> Page:
    page = await browser_.new_page(viewport={"width": 420, "height": 900})  # a phone-sized screen
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    outside = await offline(page)
    await page.goto(f"{base}/test")
    assert not outside
    assert await page.title() == "voxbus test page", errors
    return page


async def counter(page: Page, name: str) -> int:
    return int((await page.text_content(f"#{name}") or "0").replace(",", ""))


async def record_speech(
    page: Page, screenshot: Path, endpoint: str = "session"
) -> tuple[bytes, float, dict[str, str]]:
    """Start a stream to `endpoint`, let it run STREAM_SECONDS, stop: (the WAV the server
    recorded, the seconds the microphone streamed, the page's counters)."""
    await page.select_option("#endpoint", endpoint)
    await page.select_option("#rate", str(RATE))
    await page.click("#start")
    await page.wait_for_function("Number(document.getElementById('sent').textContent) > 0", timeout=15_000)
    started = time.monotonic()
    counted = "acked" if endpoint == "session" else "sent"
    await page.wait_for_function(
        f"Number(document.getElementById('{counted}').textContent) >= {int(STREAM_SECONDS * 50)}",
        timeout=int(STREAM_SECONDS * 1000) + 15_000,
    )
    await page.click("#stop")
    streamed = time.monotonic() - started
    download = page.locator("#download")
    await download.wait_for(timeout=30_000)
    counters = {name: await page.text_content(f"#{name}") or "" for name in ("sent", "acked", "p50", "p95")}
    counters["segments"] = str(await page.locator("#links a.segment").count())
    await page.screenshot(path=screenshot, full_page=True)
    href = await download.get_attribute("href")
    assert href is not None
    async with aiohttp.ClientSession() as http, http.get(href) as response:
        assert response.status == 200
        return await response.read(), streamed, counters


def assert_speech_recorded(
    wav: bytes, streamed: float, counters: dict[str, str], looped: npt.NDArray[np.float64]
) -> None:
    recorded, rate = soundfile.read(io.BytesIO(wav), dtype="float64")
    assert rate == RATE
    duration = len(recorded) / rate
    assert abs(duration - streamed) <= 0.1 * streamed, (duration, streamed)
    assert int(counters["sent"]) == round(duration * 50)
    assert counters["segments"] == "1"  # under 30 s: one segment, linked
    if int(counters["acked"]):  # the session protocol acks each chunk
        assert int(counters["acked"]) == int(counters["sent"])
        assert counters["p50"].endswith(" ms") and counters["p95"].endswith(" ms")
    assert speech_likeness(recorded * 32768, looped) >= 0.5


def speech_likeness(recorded: npt.NDArray[np.float64], looped: npt.NDArray[np.float64]) -> float:
    """The median, over the recording's whole seconds, of each second's `best_ncc` with the
    source. Chromium's fake microphone skips when the machine is busy (its capture thread starves):
    the whole clip then no longer lines up with one stretch of the source (its correlation fell
    from 0.99 to 0.72 and 0.45 in such runs), though every second of it is still the speech."""
    seconds = [recorded[start : start + RATE] for start in range(0, len(recorded) - RATE + 1, RATE)]
    return float(np.median([best_ncc(second, looped) for second in seconds]))


async def test_a_person_records_speech_from_the_browser_microphone(
    tmp_path: Path, source: tuple[Path, npt.NDArray[np.float64]]
) -> None:
    speech_wav, looped = source
    async with embedded(tmp_path) as base, browser(speech_wav) as chromium_:
        page = await open_page(chromium_, base)
        wav, streamed, counters = await record_speech(page, ARTIFACTS / "test-page.png")
        assert "Stopped" in (await page.text_content("#status") or "")
    assert int(counters["acked"]) > 0
    assert_speech_recorded(wav, streamed, counters, looped)


async def test_a_wearable_session_from_the_browser_is_recorded(
    tmp_path: Path, source: tuple[Path, npt.NDArray[np.float64]]
) -> None:
    """`/ws` with `?codec=pcm`: audio-start, bare PCM frames, audio-stop; the session's id comes
    in session-started, its recording once session-stopped said every frame is durable."""
    speech_wav, looped = source
    async with embedded(tmp_path) as base, browser(speech_wav) as chromium_:
        page = await open_page(chromium_, base)
        wav, streamed, counters = await record_speech(page, ARTIFACTS / "test-page-wearable.png", "wearable")
        log = await page.text_content("#log") or ""
    assert "session-started" in log and "session-stopped" in log
    assert_speech_recorded(wav, streamed, counters, looped)


async def test_delayed_echo_streams_at_the_servers_rate_and_comes_back_after_its_delay(
    tmp_path: Path, source: tuple[Path, npt.NDArray[np.float64]]
) -> None:
    speech_wav, _ = source
    async with embedded(tmp_path, echo_delay_ms=300) as base, browser(speech_wav) as chromium_:
        page = await open_page(chromium_, base)
        await page.select_option("#endpoint", "delayed")
        await page.click("#start")
        await page.wait_for_function(
            "Number(document.getElementById('echo-meter').dataset.level) > 0.001", timeout=15_000
        )
        status = await page.text_content("#status") or ""
        await page.click("#stop")
        await page.wait_for_function("document.getElementById('status').textContent.startsWith('Stopped')")
    assert "delayed echo at 16000 Hz" in status, status


async def test_echo_plays_back_and_the_test_button_logs_the_round_trip(
    tmp_path: Path, source: tuple[Path, npt.NDArray[np.float64]]
) -> None:
    speech_wav, _ = source
    async with embedded(tmp_path) as base, browser(speech_wav) as chromium_:
        page = await open_page(chromium_, base)
        await page.select_option("#endpoint", "echo")
        await page.fill("#delay", "200")
        await page.click("#start")
        await page.wait_for_function(
            "Number(document.getElementById('echo-meter').dataset.level) > 0.001", timeout=15_000
        )
        assert await counter(page, "echoed") > 0
        await page.click("#stop")
        await page.wait_for_function("document.getElementById('status').textContent.startsWith('Stopped')")

        await page.click("#probe")
        await page.wait_for_function(
            "document.getElementById('log').textContent.includes('received')", timeout=10_000
        )
        log = await page.text_content("#log") or ""
    assert "Test Audio WebSocket: received 6400 bytes back" in log, log


async def test_a_wrong_api_key_is_explained_on_the_page_and_leaves_no_microphone_on(
    tmp_path: Path, source: tuple[Path, npt.NDArray[np.float64]]
) -> None:
    """The server refuses the socket (1008) while the page is still starting its microphone: the
    page says why, and that run never turns the microphone on; the next run, with the right
    key, records and ends with the microphone off."""
    speech_wav, _ = source
    key = "the-right-key-of-32-bytes-or-more!"
    async with embedded(tmp_path, api_key=key) as base, browser(speech_wav) as chromium_:
        page = await open_page(chromium_, base)
        await page.fill("#token", "a-wrong-key")
        await page.click("#start")
        await page.wait_for_function("document.getElementById('status').textContent.includes('1008')")
        status = await page.text_content("#status") or ""
        await page.wait_for_function("!document.getElementById('start').disabled")

        await page.fill("#token", key)
        await page.click("#start")
        await page.wait_for_function("Number(document.getElementById('acked').textContent) >= 5")
        await page.click("#stop")
        await page.wait_for_function("document.getElementById('status').textContent.startsWith('Stopped')")
        log = await page.text_content("#log") or ""
        microphone = await page.evaluate("document.body.dataset.mic")
    assert "Invalid API key" in status and "refused" in status, status
    assert log.count("microphone on") == 1, log
    assert microphone == "off"


@pytest.mark.kafka
@pytest.mark.redis
async def test_the_page_records_through_separate_processes_over_kafka_and_redis(
    tmp_path: Path,
    source: tuple[Path, npt.NDArray[np.float64]],
    kafka_endpoint: KafkaEndpoint,
    redis_endpoint: RedisEndpoint,
) -> None:
    speech_wav, looped = source
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("page"))
    async with (
        cluster(env, tmp_path, services=("transcoder", "writer", "echo")) as processes,
        browser(speech_wav) as chromium_,
    ):
        base = processes[0].url
        page = await open_page(chromium_, base)
        wav, streamed, counters = await record_speech(page, ARTIFACTS / "test-page-cluster.png")
    assert_speech_recorded(wav, streamed, counters, looped)
