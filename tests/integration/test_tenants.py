"""Tenant keys (docs/security.md, Tenants): an admin key (`API_KEY`) makes keys for tenants; a
tenant's sessions, recordings and calls are its own (another tenant's answer 404, as ones that
never were), scopes limit what a key does, a revoked key is refused at once on every pod, and no
key reaches a log. In process (`voxbus up`), and as separate pods over real Kafka and Redis."""

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from wyoming.audio import AudioStart
from wyoming.client import AsyncTcpClient

from tests.clients import record_with_aiohttp
from tests.helpers import free_port
from tests.integration.test_cli_records import voxbus
from tests.servers import cluster, embedded_app, isolated_env, topic_prefix
from voxbus.devinfra import KafkaEndpoint, RedisEndpoint
from voxbus.devinfra.redis_local import LocalRedis

ADMIN = "an-admin-key-of-the-operator-32-bytes"
CHUNKS = [np.full(1600, value, "<i2").tobytes() for value in (100, 200, 300)]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_key(http: aiohttp.ClientSession, base: str, tenant: str, **fields: Any) -> str:
    async with http.post(f"{base}/api/keys", json={"tenant": tenant, **fields}, headers=bearer(ADMIN)) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["key"])


def ws_url(base: str, key: str, path: str = "/api/ws/audio", **query: str) -> str:
    params = "&".join(f"{name}={value}" for name, value in {"format": "pcm", **query, "api_key": key}.items())
    return f"{base.replace('http', 'ws')}{path}?{params}"


async def record(base: str, key: str, user_id: str = "ana") -> str:
    """A whole recorded session with `key`: its id."""
    replies = await record_with_aiohttp(ws_url(base, key, sample_rate="16000", user_id=user_id), CHUNKS)
    assert replies["closed"]["status"] == "completed", replies
    return str(replies["hello"]["session_id"])


async def answer(http: aiohttp.ClientSession, method: str, url: str, key: str) -> tuple[int, Any]:
    async with http.request(method, url, headers=bearer(key)) as response:
        body = await response.read()
        return response.status, json.loads(body) if response.content_type == "application/json" else body


async def test_each_tenant_sees_its_own_sessions_and_another_tenants_are_not_found(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with embedded_app(tmp_path, api_key=(ADMIN,)) as (base, _), aiohttp.ClientSession() as http:
        acme, globex = await new_key(http, base, "acme"), await new_key(http, base, "globex")
        acme_session = await record(base, acme, "ana")
        acme_other = await record(base, acme, "bo")
        globex_session = await record(base, globex, "ana")
        operator_session = await record(base, ADMIN, "ana")

        async def listed(key: str, **query: str) -> set[str]:
            async with http.get(f"{base}/api/audio/sessions", params=query, headers=bearer(key)) as r:
                assert r.status == 200
                return {s["session_id"] for s in (await r.json())["sessions"]}

        assert await listed(acme) == {acme_session, acme_other}
        assert await listed(acme, user_id="ana") == {acme_session}  # not globex's or the operator's ana
        assert await listed(globex) == {globex_session}
        assert await listed(ADMIN) == {acme_session, acme_other, globex_session, operator_session}
        assert await listed(ADMIN, user_id="ana") == {acme_session, globex_session, operator_session}

        sessions = f"{base}/api/audio/sessions"
        status, info = await answer(http, "GET", f"{sessions}/{acme_session}", acme)
        assert (status, info["tenant"], info["user_id"]) == (200, "acme", "ana")
        status, audio = await answer(http, "GET", f"{sessions}/{acme_session}/audio", acme)
        assert status == 200 and audio[:4] == b"RIFF"
        for method, path in (
            ("GET", ""),
            ("GET", "/audio"),
            ("GET", "/segments/0"),
            ("POST", "/close"),
        ):
            for key, other in ((globex, acme_session), (acme, operator_session)):
                status, body = await answer(http, method, f"{sessions}/{other}{path}", key)
                assert (status, body["error"]) == (404, "Session not found"), (method, path)
        status, info = await answer(http, "GET", f"{sessions}/{acme_session}", ADMIN)
        assert (status, info["tenant"]) == (200, "acme")
        status, info = await answer(http, "GET", f"{sessions}/{operator_session}", ADMIN)
        assert (status, info["tenant"]) == (200, "")

        # a tenant's calls: the carriers' calls are the operator's
        async with http.get(f"{base}/vonage/answer", params={"uuid": "CALL-T", "from": "4470"}) as r:
            assert r.status == 200
        assert (await answer(http, "GET", f"{base}/api/calls", acme))[1]["calls"] == []
        assert (await answer(http, "GET", f"{base}/api/calls/CALL-T", acme))[0] == 404
        assert (await answer(http, "GET", f"{base}/api/calls/CALL-T", ADMIN))[0] == 200

        metrics = await (await http.get(f"{base}/metrics")).text()
        assert 'voxbus_ingest_tenant_sessions_total{tenant="acme"} 2.0' in metrics
        assert 'voxbus_ingest_tenant_sessions_total{tenant="globex"} 1.0' in metrics
        assert f'voxbus_ingest_tenant_bytes_total{{tenant="acme"}} {2 * sum(map(len, CHUNKS))}.0' in metrics
    # voxbus's own log lines (the test server's access log is aiohttp's: `voxbus up` has none)
    logged = "\n".join(str(r.__dict__) for r in caplog.records if r.name.startswith("voxbus"))
    assert logged and all(key not in logged for key in (acme, globex, ADMIN))


async def test_a_tenant_cannot_resume_or_append_to_another_tenants_session(tmp_path: Path) -> None:
    async with embedded_app(tmp_path, api_key=(ADMIN,)) as (base, _), aiohttp.ClientSession() as http:
        acme, globex = await new_key(http, base, "acme"), await new_key(http, base, "globex")
        async with http.ws_connect(ws_url(base, acme, sample_rate="16000")) as ws:
            session_id = (await ws.receive_json())["session_id"]
            await ws.send_bytes(CHUNKS[0])
            assert (await ws.receive_json())["chunk_count"] == 1
        resume = f"/api/ws/audio/{session_id}"
        async with http.ws_connect(ws_url(base, globex, resume)) as ws:
            assert await ws.receive_json() == {"error": "Session not found", "session_id": session_id}
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
        async with http.ws_connect(ws_url(base, acme, resume)) as ws:
            resumed = await ws.receive_json()
            assert (resumed["message"], resumed["session_id"], resumed["chunk_count"]) == (
                "Audio session resumed",
                session_id,
                1,
            )


async def test_scopes_limit_a_key_to_streaming_or_reading(tmp_path: Path) -> None:
    async with embedded_app(tmp_path, api_key=(ADMIN,)) as (base, _), aiohttp.ClientSession() as http:
        reader = await new_key(http, base, "acme", scopes=["read"])
        streamer = await new_key(http, base, "acme", scopes=["stream"])
        async with http.ws_connect(ws_url(base, reader)) as ws:
            assert await ws.receive_json() == {"error": "API key lacks scope", "scope": "stream"}
            assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            assert ws.close_code == 1008
        session_id = await record(base, streamer)
        sessions = f"{base}/api/audio/sessions"
        assert await answer(http, "GET", sessions, streamer) == (
            403,
            {"error": "API key lacks scope", "scope": "read"},
        )
        status, info = await answer(http, "GET", f"{sessions}/{session_id}", reader)
        assert (status, info["status"]) == (200, "completed")
        assert (await answer(http, "POST", f"{sessions}/{session_id}/close", reader))[0] == 403
        assert (await answer(http, "POST", f"{sessions}/{session_id}/close", streamer))[0] == 200
        # only an admin key manages keys
        assert (await answer(http, "GET", f"{base}/api/keys", streamer))[0] == 403
        async with http.post(f"{base}/api/keys", json={"tenant": "Not Valid"}, headers=bearer(ADMIN)) as r:
            assert r.status == 422
            assert (await r.json())["error"] == "Invalid key request"


async def test_a_revoked_key_is_refused_at_once_and_its_replacement_works(tmp_path: Path) -> None:
    async with embedded_app(tmp_path, api_key=(ADMIN,)) as (base, _), aiohttp.ClientSession() as http:
        old = await new_key(http, base, "acme", name="phone app v1")
        session_id = await record(base, old)
        status, listed = await answer(http, "GET", f"{base}/api/keys", ADMIN)
        assert status == 200 and old not in json.dumps(listed)
        (entry,) = listed["keys"]
        assert (entry["tenant"], entry["scopes"], entry["name"], entry["revoked_at"]) == (
            "acme",
            ["read", "stream"],
            "phone app v1",
            None,
        )
        new = await new_key(http, base, "acme", name="phone app v2")
        status, revoked = await answer(http, "POST", f"{base}/api/keys/{entry['key_id']}/revoke", ADMIN)
        assert status == 200 and revoked["revoked_at"] is not None
        sessions = f"{base}/api/audio/sessions/{session_id}"
        assert await answer(http, "GET", sessions, old) == (401, {"error": "Invalid API key"})
        async with http.ws_connect(ws_url(base, old)) as ws:
            assert await ws.receive_json() == {"error": "Invalid API key"}
        assert (await answer(http, "GET", sessions, new))[0] == 200  # the tenant's, whichever key
        assert (await answer(http, "POST", f"{base}/api/keys/000000000000/revoke", ADMIN))[0] == 404


async def test_tenant_keys_need_an_admin_key_set(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path) as (base, _),
        aiohttp.ClientSession() as http,
        http.post(f"{base}/api/keys", json={"tenant": "acme"}) as r,
    ):
        assert r.status == 409
        assert "API_KEY" in (await r.json())["error"]


async def test_a_wyoming_device_streams_with_its_tenants_key_in_audio_start(tmp_path: Path) -> None:
    port = free_port()
    async with (
        embedded_app(tmp_path, api_key=(ADMIN,), wyoming_port=port) as (base, _),
        aiohttp.ClientSession() as http,
    ):
        device = await new_key(http, base, "acme", scopes=["stream"])
        reader = await new_key(http, base, "acme", scopes=["read"])
        async with AsyncTcpClient("127.0.0.1", port) as client:
            start = AudioStart(rate=16000, width=2, channels=1).event()
            start.data["token"] = device
            await client.write_event(start)
            started = await client.read_event()
            assert started is not None and started.type == "session-started"
            session_id = started.data["session_id"]
        async with AsyncTcpClient("127.0.0.1", port) as client:
            start = AudioStart(rate=16000, width=2, channels=1).event()
            start.data["token"] = reader
            await client.write_event(start)
            refused = await client.read_event()
            assert refused is not None
            assert refused.data == {"text": "API key lacks scope (scope: stream)", "code": "key-lacks-scope"}
        status, info = await answer(http, "GET", f"{base}/api/audio/sessions/{session_id}", reader)
        assert (status, info["tenant"], info["protocol"]) == (200, "acme", "wyoming-tcp")


async def test_a_key_revoked_while_a_device_is_connected_opens_and_resumes_nothing_more(
    tmp_path: Path,
) -> None:
    """A wearable holds its TCP connection for days: revoking its key must not wait for it to
    reconnect. The session it streams goes on; its next audio-start, new or resuming, is refused."""
    port = free_port()
    async with (
        embedded_app(tmp_path, api_key=(ADMIN,), wyoming_port=port) as (base, _),
        aiohttp.ClientSession() as http,
        AsyncTcpClient("127.0.0.1", port) as client,
    ):
        device = await new_key(http, base, "acme", scopes=["stream"])
        start = AudioStart(rate=16000, width=2, channels=1).event()
        start.data["token"] = device
        await client.write_event(start)
        started = await client.read_event()
        assert started is not None and started.type == "session-started"
        key_id = device.split("_")[1]
        assert (await answer(http, "POST", f"{base}/api/keys/{key_id}/revoke", ADMIN))[0] == 200
        again = AudioStart(rate=16000, width=2, channels=1).event()
        again.data["session_id"] = started.data["session_id"]
        for refused_start in (AudioStart(rate=16000, width=2, channels=1).event(), again):
            await client.write_event(refused_start)
            reply = await client.read_event()
            while reply is not None and reply.type != "error":  # the ended session's own events
                reply = await client.read_event()
            assert reply is not None and reply.data == {"text": "Invalid API key", "code": "invalid-api-key"}


async def test_keys_cannot_be_looked_up_without_redis_and_the_client_is_told_so(tmp_path: Path) -> None:
    """Redis down: a tenant key's request gets 503 `State store unavailable` (a socket, before the
    upgrade), never a bare 500 or `Invalid API key`; once Redis is back the key works again."""
    with LocalRedis(persistent=True) as own_redis:
        own_redis.start()
        async with (
            embedded_app(tmp_path, api_key=(ADMIN,), redis_url=own_redis.url) as (base, _),
            aiohttp.ClientSession() as http,
        ):
            acme = await new_key(http, base, "acme")
            sessions = f"{base}/api/audio/sessions"
            assert (await answer(http, "GET", sessions, acme))[0] == 200
            await asyncio.to_thread(own_redis.stop)
            status, body = await answer(http, "GET", sessions, acme)
            assert (status, body) == (503, {"error": "State store unavailable"})
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await http.ws_connect(ws_url(base, acme))
            assert refused.value.status == 503
            await asyncio.to_thread(own_redis.start)
            assert (await answer(http, "GET", sessions, acme))[0] == 200


@pytest.mark.timeout(240)
async def test_keys_made_on_one_pod_count_on_another_at_once(
    tmp_path: Path, kafka_endpoint: KafkaEndpoint, redis_endpoint: RedisEndpoint
) -> None:
    """Two ingest pods over real Kafka and Redis: `voxbus keys` makes a key through one pod, a
    client streams with it through the other, the tenants stay apart, and a revocation through
    the second refuses the key on the first at once (no restart)."""
    env = isolated_env(tmp_path, kafka_endpoint, redis_endpoint, topic_prefix("tenants"), API_KEY=ADMIN)
    async with cluster(env, tmp_path, ingests=2) as (one, two, *_), aiohttp.ClientSession() as http:
        made = await voxbus("keys", "create", "--tenant", "acme", "--url", one.url, "--api-key", ADMIN)
        assert made.code == 0, made.err
        acme = made.out.strip()
        assert acme.startswith("vbk_") and "shown this once" in made.err
        globex = await new_key(http, one.url, "globex")
        session_id = await record(two.url, acme)
        for pod in (one, two):
            listed = await answer(http, "GET", f"{pod.url}/api/audio/sessions", acme)
            assert [s["session_id"] for s in listed[1]["sessions"]] == [session_id]
            assert (await answer(http, "GET", f"{pod.url}/api/audio/sessions/{session_id}", globex))[0] == 404
        keys = await voxbus("keys", "list", "--url", two.url, "--api-key", ADMIN)
        assert keys.code == 0 and acme not in keys.out
        key_id = acme.split("_")[1]
        assert any(line.split()[:3] == [key_id, "acme", "read,stream"] for line in keys.out.splitlines())
        revoked = await voxbus("keys", "revoke", key_id, "--url", two.url, "--api-key", ADMIN)
        assert (revoked.code, revoked.out.strip()) == (0, f"revoked {key_id} (tenant acme)")
        assert (await answer(http, "GET", f"{one.url}/api/audio/sessions", acme))[0] == 401
        refused = await voxbus("keys", "list", "--url", one.url, "--api-key", globex)
        assert (refused.code, refused.err.strip()) == (
            1,
            "voxbus: Only an admin key (API_KEY) manages keys (HTTP 403)",
        )
    logs = "\n".join(path.read_text() for path in sorted(tmp_path.glob("ingest-*.log")))  # noqa: ASYNC240
    assert "listening" in logs and all(key not in logs for key in (acme, globex, ADMIN))
