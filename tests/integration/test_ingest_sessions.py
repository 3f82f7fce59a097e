"""The session protocol as recording clients use it: stream, close, download; sample-exact.

Embedded (`voxbus up` in-process) with aiohttp's and the `websockets` client; distributed with
separate ingest, transcoder and writer processes over real Kafka and Redis, including a resume
on the other ingest instance after a dropped socket.
"""

import io
import uuid
from pathlib import Path

import aiohttp
import numpy as np
import pytest
import soundfile

from tests.audio import chunked, speech, wav_bytes
from tests.clients import CLOSE, RECORDERS
from tests.servers import cluster, distributed_env, embedded, fresh_redis_db
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint

SECONDS = 60.0


def check_recording(result: dict, source: np.ndarray, chunk_count: int) -> str:  # type: ignore[type-arg]
    session_id = result["hello"]["session_id"]
    assert result["hello"] == {
        "message": "Audio session created",
        "session_id": session_id,
        "chunk_count": 0,
        "status": "active",
    }
    assert [a["chunk_count"] for a in result["acks"]] == list(range(1, chunk_count + 1))
    assert {a["message"] for a in result["acks"]} == {"Chunk processed successfully"}
    closed = result["closed"]
    assert closed["message"] == "Session closed successfully"
    assert closed["status"] == "completed"
    assert closed["chunk_count"] == chunk_count
    assert closed["duration_seconds"] == pytest.approx(len(source) / 16000)
    assert closed["file_path"] == f"{session_id}.wav"
    assert result["close_code"] == 1000
    return session_id


async def download(base: str, session_id: str, what: str = "audio") -> np.ndarray:  # type: ignore[type-arg]
    """The session's WAV (`what`: "audio"), or one segment's ("segments/{index}")."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{base}/api/audio/sessions/{session_id}/{what}") as r,
    ):
        assert r.status == 200
        assert r.headers["Content-Type"] == "audio/wav"
        samples, rate = soundfile.read(io.BytesIO(await r.read()), dtype="int16", always_2d=True)
    assert rate == 16000
    return samples


@pytest.mark.parametrize("client", ["aiohttp", "websockets"])
async def test_embedded_stream_close_download_is_sample_exact(tmp_path: Path, client: str) -> None:
    source = speech(SECONDS, 16000)
    chunks = chunked(wav_bytes(source, 16000), 4096)
    async with embedded(tmp_path) as base:
        url = f"{base}/api/ws/audio?sample_rate=16000&channels=1&format=wav&user_id=alice"
        result = await RECORDERS[client](url, chunks)
        session_id = check_recording(result, source, len(chunks))
        np.testing.assert_array_equal(await download(base, session_id), source)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/audio/sessions/{session_id}") as response:
                info = await response.json()
            async with http.get(
                f"{base}/api/audio/sessions/{session_id}/audio", headers={"Range": "bytes=44-1043"}
            ) as response:
                assert response.status == 206
                assert await response.read() == source.tobytes()[:1000]
        segments = [await download(base, session_id, f"segments/{index}") for index in (0, 1)]
        async with aiohttp.ClientSession() as http:
            for index in ("2", "-1", "x", "\u00b2"):  # past the last; not a number (² is a digit to Python)
                async with http.get(f"{base}/api/audio/sessions/{session_id}/segments/{index}") as r:
                    assert (r.status, await r.json()) == (
                        404,
                        {"error": "No such segment", "session_id": session_id, "segments": 2},
                    ), index
    assert info["status"] == "completed"
    assert info["total_chunks"] == len(chunks)
    assert info["bytes_received"] == sum(len(c) for c in chunks)
    assert len(info["segments"]) == 2  # 30 + 30 s
    assert [len(segment) for segment in segments] == [30 * 16000, 30 * 16000]
    np.testing.assert_array_equal(np.concatenate(segments), source)


async def test_distributed_stream_and_resume_on_the_other_instance(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    storage = tmp_path / "audio"
    env = distributed_env(
        kafka_endpoint.bootstrap_servers,
        fresh_redis_db(redis_endpoint.url),
        storage,
        f"ing-{uuid.uuid4().hex[:8]}.",
    )
    source = speech(SECONDS, 16000)
    chunks = chunked(wav_bytes(source, 16000), 4096)
    half = len(chunks) // 2
    async with cluster(env, tmp_path, ingests=2) as (first, second, *_):
        # the whole stream through one instance
        result = await RECORDERS["websockets"](
            f"{first.url}/api/ws/audio?sample_rate=16000&format=wav", chunks
        )
        session_id = check_recording(result, source, len(chunks))
        np.testing.assert_array_equal(await download(second.url, session_id), source)

        # half on the first instance, the socket dropped, the rest on the second
        url = f"{first.url}/api/ws/audio?sample_rate=16000&format=wav"
        opened = await RECORDERS["aiohttp"](url, chunks[:half], close=False)
        session_id = opened["hello"]["session_id"]
        assert opened["acks"][-1]["chunk_count"] == half
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(f"{second.url}/api/ws/audio/{session_id}") as ws,
        ):
            assert await ws.receive_json() == {
                "message": "Audio session resumed",
                "session_id": session_id,
                "chunk_count": half,
                "status": "active",
            }
            for chunk in chunks[half:]:
                await ws.send_bytes(chunk)
            acks = [await ws.receive_json() for _ in chunks[half:]]
            assert [a["chunk_count"] for a in acks] == list(range(half + 1, len(chunks) + 1))
            await ws.send_str(CLOSE)
            closed = await ws.receive_json(timeout=60)
        assert closed["status"] == "completed"
        np.testing.assert_array_equal(await download(first.url, session_id), source)
