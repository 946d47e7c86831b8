"""The WattShift simulator is faithful to providers.md §3/§4: POST-only routes answering 201, the API key
or a session token, the seed-004 status body with all seven keys (and the legacy brand spelling), Home
lists, NestJS error bodies, scenario walks and fault injection."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bridge.clock import ManualClock
from bridge.simulator.wattshift import DEFAULT_API_KEY, HOME_KEYS, OMIT, STATUS_KEYS, WattShiftSimulator

STATUS = "/v1/onboarding/status/get"
HOMES = "/v1/homes/list"
SESSION_TOKEN = "/v1/onboarding/session-token/generate"
KEY = {"x-ws-api-key": DEFAULT_API_KEY}


@dataclass
class WattShift:
    sim: WattShiftSimulator
    client: TestClient
    clock: ManualClock

    async def post(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return await self.client.post(path, json=body, headers=KEY if headers is None else headers)

    async def status(self, home_id: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        resp = await self.post(STATUS, {"homeId": home_id}, headers)
        assert resp.status == 201, await resp.text()
        return await resp.json()


@pytest.fixture
async def ws(aiohttp_client) -> WattShift:
    clock = ManualClock()
    sim = WattShiftSimulator(clock=clock)
    return WattShift(sim=sim, client=await aiohttp_client(sim.app()), clock=clock)


# ------------------------------------------------------------------------------------------ auth


def test_the_default_api_key_has_the_documented_shape():
    assert re.fullmatch(r"sk-[0-9a-f]{64}", DEFAULT_API_KEY)


@pytest.mark.parametrize("path", [STATUS, HOMES, SESSION_TOKEN])
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="none"),
        pytest.param({"x-ws-api-key": "sk-" + "0" * 64}, id="wrong-key"),
        pytest.param({"Authorization": "Bearer " + DEFAULT_API_KEY}, id="key-as-bearer"),
    ],
)
async def test_calls_without_a_valid_credential_get_the_nest_401(ws, path, headers):
    home = ws.sim.add_home()
    resp = await ws.post(path, {"homeId": home}, headers)
    assert resp.status == 401
    assert await resp.json() == {"statusCode": 401, "message": "Unauthorized"}


async def test_a_session_token_authorises_reads_until_it_expires_on_the_injected_clock(ws):
    home = ws.sim.add_home()
    resp = await ws.post(SESSION_TOKEN, {"userId": "user-1"})
    assert resp.status == 201
    body = await resp.json()
    assert list(body) == ["sessionToken"]
    bearer = {"Authorization": "Bearer " + body["sessionToken"]}
    assert (await ws.status(home, bearer))["homeId"] == home
    ws.clock.advance(3599)
    assert (await ws.post(HOMES, headers=bearer)).status == 201
    ws.clock.advance(1)
    assert (await ws.post(STATUS, {"homeId": home}, bearer)).status == 401


async def test_a_session_token_cannot_mint_another_and_revoking_ends_it(ws):
    token = (await (await ws.post(SESSION_TOKEN)).json())["sessionToken"]
    bearer = {"Authorization": "Bearer " + token}
    assert (await ws.post(SESSION_TOKEN, headers=bearer)).status == 401
    ws.sim.revoke_tokens()
    assert (await ws.post(HOMES, headers=bearer)).status == 401
    assert (await ws.post(HOMES)).status == 201  # the API key itself never expires


async def test_a_non_string_user_id_gets_a_validation_400(ws):
    resp = await ws.post(SESSION_TOKEN, {"userId": 42})
    assert resp.status == 400
    assert await resp.json() == {
        "statusCode": 400,
        "message": ["userId must be a string"],
        "error": "Bad Request",
    }


# ------------------------------------------------------------------------------------------ status


async def test_a_new_home_reports_not_started_with_all_seven_keys_and_201(ws):
    home = ws.sim.add_home()
    assert re.fullmatch(r"ws_home_[0-9a-f]{32}", home)
    body = await ws.status(home)
    assert list(body) == list(STATUS_KEYS)
    assert body == {
        "id": None,
        "homeId": home,
        "status": "NOT_STARTED",
        "eligibilityStatus": None,
        "thermostatBrandCode": None,
        "zipcode": None,
        "step": None,
    }


async def test_onboarding_walks_to_completed_step_by_step(ws):
    home = ws.sim.add_home(zipcode="10001")
    ws.sim.start(home, brand="nest")
    started = await ws.status(home)
    assert (started["status"], started["step"], started["thermostatBrandCode"]) == ("IN_PROGRESS", 1, "nest")
    assert started["zipcode"] == "10001"
    assert started["id"].startswith("onboarding_flow_")
    assert started["eligibilityStatus"] is None
    assert ws.sim.advance(home) == 2
    assert (await ws.status(home))["step"] == 2
    ws.sim.complete(home)
    done = await ws.status(home)
    assert (done["status"], done["eligibilityStatus"], done["step"]) == ("COMPLETED", "eligible", 2)
    assert done["id"] == started["id"]


async def test_onboarding_can_end_in_error_or_as_not_eligible(ws):
    broken, refused = ws.sim.add_home(), ws.sim.add_home()
    ws.sim.start(broken)
    ws.sim.error(broken)
    ws.sim.start(refused)
    ws.sim.complete(refused, eligibility="notEligible")
    assert (await ws.status(broken))["status"] == "ERROR"
    assert (await ws.status(refused))["eligibilityStatus"] == "notEligible"


def test_advancing_a_home_that_has_not_started_is_refused(ws):
    with pytest.raises(ValueError, match="start"):
        ws.sim.advance(ws.sim.add_home())


async def test_a_legacy_home_spells_the_brand_thermostat_brand_name_in_the_same_place(ws):
    home = ws.sim.add_home(legacy_brand_field=True)
    ws.sim.start(home, brand="ecobee")
    body = await ws.status(home)
    assert list(body) == [k if k != "thermostatBrandCode" else "thermostatBrandName" for k in STATUS_KEYS]
    assert body["thermostatBrandName"] == "ecobee"


async def test_set_status_writes_schema_violating_values_and_can_omit_a_key(ws):
    home = ws.sim.add_home()
    ws.sim.set_status(home, status="PAUSED", step=2.5, zipcode="not-a-zip", eligibilityStatus=OMIT)
    body = await ws.status(home)
    assert "eligibilityStatus" not in body
    assert (body["status"], body["step"], body["zipcode"]) == ("PAUSED", 2.5, "not-a-zip")
    with pytest.raises(ValueError, match="unknown status field"):
        ws.sim.set_status(home, colour="red")


@pytest.mark.parametrize(
    "body",
    [pytest.param({}, id="missing"), pytest.param({"homeId": 7}, id="number"), pytest.param([], id="array")],
)
async def test_a_missing_or_non_string_home_id_gets_the_nest_validation_400(ws, body):
    resp = await ws.post(STATUS, body)
    assert resp.status == 400
    assert await resp.json() == {
        "statusCode": 400,
        "message": ["homeId must be a string"],
        "error": "Bad Request",
    }


async def test_auth_is_checked_before_validation(ws):
    resp = await ws.post(STATUS, {}, {})
    assert resp.status == 401


async def test_a_non_json_body_gets_400(ws):
    resp = await ws.client.post(STATUS, data=b"{homeId:", headers={**KEY, "Content-Type": "application/json"})
    assert resp.status == 400
    assert (await resp.json())["error"] == "Bad Request"


async def test_an_unknown_home_gets_a_nest_404(ws):
    resp = await ws.post(STATUS, {"homeId": "ws_home_" + "f" * 32})
    assert resp.status == 404
    assert await resp.json() == {"statusCode": 404, "message": "Home not found", "error": "Not Found"}


async def test_reading_with_get_is_nests_cannot_get_404(ws):
    resp = await ws.client.get(STATUS, headers=KEY)
    assert resp.status == 404
    assert await resp.json() == {"statusCode": 404, "message": f"Cannot GET {STATUS}", "error": "Not Found"}


# ------------------------------------------------------------------------------------------ homes


async def test_homes_list_is_a_plain_array_of_homes_with_every_key(ws):
    first = ws.sim.add_home(name="Cabin", zipcode="94107")
    second = ws.sim.add_home(home_id="ws_home_123456789", name="Flat", city="Oakland")
    resp = await ws.post(HOMES)
    assert resp.status == 201
    homes = await resp.json()
    assert [h["id"] for h in homes] == [first, second]
    for home in homes:
        assert list(home) == list(HOME_KEYS)
        assert home["createdAt"] == home["updatedAt"] == "2026-11-22T21:00:00Z"
        assert (home["energyMarketBiddingEnabled"], home["carbonSignalIntensity"]) == (False, "MEDIUM")
    assert (homes[0]["name"], homes[0]["zipcode"], homes[1]["city"]) == ("Cabin", "94107", "Oakland")


async def test_updating_a_home_moves_updated_at_and_shows_in_the_list(ws):
    home = ws.sim.add_home()
    ws.clock.advance(timedelta(minutes=5))
    ws.sim.update_home(home, enabled=False)
    listed = (await (await ws.post(HOMES)).json())[0]
    assert listed["enabled"] is False
    assert listed["updatedAt"] == "2026-11-22T21:05:00Z"
    assert listed["createdAt"] == "2026-11-22T21:00:00Z"
    with pytest.raises(ValueError, match="fixed"):
        ws.sim.update_home(home, id="ws_home_x")
    with pytest.raises(ValueError, match="unknown home field"):
        ws.sim.add_home(colour="red")
    assert len(ws.sim.state()["homes"]) == 1  # the rejected home was not kept


async def test_a_removed_home_leaves_the_list_and_its_status_is_404(ws):
    keep, gone = ws.sim.add_home(), ws.sim.add_home()
    ws.sim.remove_home(gone)
    assert [h["id"] for h in await (await ws.post(HOMES)).json()] == [keep]
    assert (await ws.post(STATUS, {"homeId": gone})).status == 404
    with pytest.raises(KeyError):
        ws.sim.start(gone)


def test_home_ids_are_unique(ws):
    home = ws.sim.add_home()
    with pytest.raises(ValueError, match="exists"):
        ws.sim.add_home(home_id=home)


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        pytest.param("status", 503, "application/json", id="status"),
        pytest.param("garbage", 200, "application/json", id="garbage"),
        pytest.param("truncated", 200, "application/json", id="truncated"),
        pytest.param("html", 200, "text/html", id="html"),
    ],
)
async def test_an_injected_fault_is_served_once_then_the_route_recovers(ws, kind, status, content_type):
    home = ws.sim.add_home()
    ws.sim.fail("status", kind=kind, status=503)
    resp = await ws.post(STATUS, {"homeId": home})
    assert (resp.status, resp.content_type) == (status, content_type)
    if kind != "status":
        with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
            await resp.json(content_type=None)
    assert list(await ws.status(home)) == list(STATUS_KEYS)


@pytest.mark.parametrize("style", ["seconds", "http-date"])
async def test_a_429_carries_retry_after_as_seconds_or_an_http_date(ws, style):
    value = (
        "120" if style == "seconds" else format_datetime(ws.clock.now() + timedelta(minutes=2), usegmt=True)
    )
    ws.sim.fail("homes", status=429, times=2, headers={"Retry-After": value})
    for _ in range(2):
        resp = await ws.post(HOMES)
        assert (resp.status, resp.headers["Retry-After"]) == (429, value)
    assert (await ws.post(HOMES)).status == 201


async def test_a_slow_fault_trips_a_client_timeout(ws):
    ws.sim.fail("homes", kind="slow", delay=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await ws.client.post(HOMES, headers=KEY, timeout=aiohttp.ClientTimeout(total=0.05))
    assert (await ws.post(HOMES)).status == 201


async def test_the_session_token_route_can_be_failed(ws):
    ws.sim.fail("session_token", status=500)
    assert (await ws.post(SESSION_TOKEN)).status == 500
    assert (await ws.post(SESSION_TOKEN)).status == 201


def test_faults_name_a_known_route_and_kind(ws):
    with pytest.raises(ValueError, match="status"):
        ws.sim.fail("onboarding")
    with pytest.raises(ValueError, match="kind"):
        ws.sim.fail("homes", kind="explode")


async def test_the_request_log_records_method_and_path_even_when_refused(ws):
    await ws.post(HOMES)
    await ws.post(STATUS, {"homeId": "x"}, {})
    assert ws.sim.requests == [("POST", HOMES), ("POST", STATUS)]


async def test_admin_endpoints_drive_the_simulator_over_http(ws):
    client = ws.client
    home = (await (await client.post("/_sim/homes", json={"name": "Loft"})).json())["id"]
    assert (await (await client.post(f"/_sim/homes/{home}/start", json={"brand": "honeywell"})).json())[
        "thermostatBrandCode"
    ] == "honeywell"
    assert (await (await client.post(f"/_sim/homes/{home}/advance", json={"steps": 2})).json())["step"] == 3
    assert (await (await client.post(f"/_sim/homes/{home}/complete")).json())["status"] == "COMPLETED"
    assert (await (await client.post(f"/_sim/homes/{home}/status", json={"step": None})).json())[
        "step"
    ] is None
    assert (await (await client.post(f"/_sim/homes/{home}", json={"enabled": False})).json())[
        "enabled"
    ] is False
    assert (await client.post(f"/_sim/homes/{home}", json={"bogus": 1})).status == 400
    state = await (await client.get("/_sim/state")).json()
    assert state == {"homes": {home: {"status": "COMPLETED", "step": None, "enabled": False}}}
    assert (await client.post("/_sim/faults/status", json={"status": 502})).status == 204
    assert (await ws.post(STATUS, {"homeId": home})).status == 502
    assert (await client.post(f"/_sim/homes/{home}/error")).status == 200
    assert (await client.delete(f"/_sim/homes/{home}")).status == 204
    assert (await client.get(f"/_sim/homes/{home}")).status == 404
