"""Exotel's HTTP callbacks, embedded: the Passthru applet's (a GET query, a POST of JSON with the
stream as a JSON string) and the StatusCallback's (a form POST) land in the call record; Basic
auth and the IP allow-list refuse what is not Exotel's, honouring X-Forwarded-For only from a
trusted proxy."""

import base64
import json
from pathlib import Path

import aiohttp

from tests.servers import embedded_app

PASSTHRU = {
    "CallSid": "EX-1",
    "CallFrom": "09800000000",
    "CallTo": "08000000000",
    "Direction": "incoming",
    "CurrentTime": "2026-12-02 03:00:05",
    "Stream[StreamSID]": "ST-1",
    "Stream[Status]": "completed",
    "Stream[Duration]": "42",
    "Stream[DisconnectedBy]": "user",
}


async def test_passthru_and_status_callbacks_are_recorded_in_the_call_record(tmp_path: Path) -> None:
    async with embedded_app(tmp_path) as (base, _), aiohttp.ClientSession() as http:
        async with http.get(f"{base}/exotel/passthru", params=PASSTHRU) as response:
            assert response.status == 200
        status = {"CallSid": "EX-1", "Status": "completed", "DateUpdated": "2026-12-02 03:00:50"}
        async with http.post(f"{base}/exotel/status", data=status) as response:
            assert response.status == 200
        # the JSON form, with the stream as a JSON string: another call
        body = {
            "CallSid": "EX-2",
            "From": "09811111111",
            "Stream": json.dumps({"StreamSID": "ST-2", "Status": "failed"}),
        }
        async with http.post(f"{base}/exotel/passthru", json=body) as response:
            assert response.status == 200
        async with http.get(f"{base}/api/calls/EX-1") as response:
            call = await response.json()
        async with http.get(f"{base}/api/calls/EX-2") as response:
            other = await response.json()
        async with http.get(f"{base}/exotel/status", params={"Status": "busy"}) as response:
            assert response.status == 400
            assert "CallSid" in (await response.json())["detail"]
        async with http.get(f"{base}/api/calls?provider=exotel") as response:
            listed = [entry["call_id"] for entry in (await response.json())["calls"]]
    assert (call["provider"], call["from"], call["to"], call["direction"]) == (
        "exotel",
        "09800000000",
        "08000000000",
        "incoming",
    )
    assert [(entry["status"], entry["carrier_time"]) for entry in call["statuses"]] == [
        ("passthru", "2026-12-02 03:00:05"),
        ("completed", "2026-12-02 03:00:50"),
    ]
    assert call["status"] == "completed"  # a passthru is a step of the call, not its status
    assert call["stream"] == {
        "stream_sid": "ST-1",
        "status": "completed",
        "duration": "42",
        "disconnected_by": "user",
    }
    assert other["stream"] == {"stream_sid": "ST-2", "status": "failed"}
    assert other["from"] == "09811111111"
    assert listed == ["EX-2", "EX-1"]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_auth_refuses_callbacks_without_exotels_credentials(tmp_path: Path) -> None:
    async with (
        embedded_app(tmp_path, exotel_api_key="exo-key", exotel_api_token="exo-token") as (base, _),
        aiohttp.ClientSession() as http,
    ):
        for headers in (
            {},
            _basic("exo-key", "wrong"),
            {"Authorization": "Basic !!!"},
            {"Authorization": "Bearer exo-token"},
        ):
            async with http.get(f"{base}/exotel/passthru", params=PASSTHRU, headers=headers) as response:
                assert response.status == 401, headers
                assert response.headers["WWW-Authenticate"] == 'Basic realm="voxbus"'
                assert await response.json() == {"error": "Invalid credentials"}
        async with http.get(f"{base}/api/calls/EX-1") as response:
            assert response.status == 404  # nothing refused was recorded
        async with http.get(
            f"{base}/exotel/passthru", params=PASSTHRU, headers=_basic("exo-key", "exo-token")
        ) as response:
            assert response.status == 200


async def test_the_allow_list_takes_a_forwarded_address_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    allowed = {"X-Forwarded-For": "10.1.2.3"}
    spoofed = {"X-Forwarded-For": "10.1.2.3, 198.51.100.7"}  # the client wrote the first hop itself
    async with aiohttp.ClientSession() as http:
        async with embedded_app(tmp_path, exotel_allowed_ips="10.0.0.0/8") as (base, _):
            for headers in ({}, allowed):  # no trusted proxy: the peer (127.0.0.1) is the client
                async with http.post(
                    f"{base}/exotel/status", data={"CallSid": "EX-3"}, headers=headers
                ) as response:
                    assert response.status == 403, headers
                    assert await response.json() == {"error": "Address not allowed"}
        async with embedded_app(tmp_path, exotel_allowed_ips="10.0.0.0/8", trusted_proxies="127.0.0.1") as (
            base,
            _,
        ):
            async with http.post(
                f"{base}/exotel/status", data={"CallSid": "EX-3"}, headers=allowed
            ) as response:
                assert response.status == 200
            for headers in ({}, spoofed, {"X-Forwarded-For": "not-an-address"}):
                async with http.post(
                    f"{base}/exotel/status", data={"CallSid": "EX-4"}, headers=headers
                ) as response:
                    assert response.status == 403, headers
