"""The Podero simulator is faithful to providers.md §1/§4: tokens, the seed-002 wallbox shape and its
derived fields, soft delete, Ninja-style errors, discovery lists, onboarding sessions, cues and faults."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timedelta

import aiohttp
import pytest

from bridge.simulator.podero import API, VOLATILE, WALLBOX_KEYS

from .conftest import BASIC, ORG

REQUIRED = {
    "connection_status", "monitoring_status", "steering_status", "device_model", "owner",
    "created_at", "updated_at", "mode", "connection",
}  # fmt: skip
ONBOARDING_KEYS = [
    "authentication_url", "id", "user", "price_zone_default", "is_smart_optimization_active_default",
    "skip_to", "success_url", "cancel_url", "expiration_date", "object_id", "external_metadata", "language",
]  # fmt: skip


async def wallbox(api, ada, **params):
    resp = await api.get(api.wallbox_path(ada["user_id"], ada["wallbox_id"]), **params)
    assert resp.status == 200, await resp.text()
    return await resp.json()


# ------------------------------------------------------------------------------------------ tokens


async def test_client_credentials_token_has_the_documented_shape(podero_api):
    body = await podero_api.token()
    assert list(body) == ["access_token", "expires_in", "token_type", "scope"]
    assert re.fullmatch(r"[A-Za-z0-9]{30}", body["access_token"])
    assert body["expires_in"] == 36000
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "read write"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Authorization": "Basic " + "c2ltLWNsaWVudDp3cm9uZw=="}, id="wrong-secret"),
        pytest.param({}, id="no-client-auth"),
        pytest.param({"Authorization": "Basic !!!"}, id="garbled-basic"),
    ],
)
async def test_a_bad_client_gets_401_invalid_client(podero_api, headers):
    resp = await podero_api.client.post(
        "/oauth2/token/", json={"grant_type": "client_credentials"}, headers=headers
    )
    assert resp.status == 401
    assert await resp.json() == {"error": "invalid_client"}


@pytest.mark.parametrize("body", [{}, {"grant_type": "authorization_code"}], ids=["missing", "unknown"])
async def test_a_missing_or_unknown_grant_gets_400_unsupported_grant_type(podero_api, body):
    resp = await podero_api.client.post("/oauth2/token/", json=body, headers={"Authorization": BASIC})
    assert resp.status == 400
    assert await resp.json() == {"error": "unsupported_grant_type"}


async def test_a_token_works_until_its_lifetime_ends_on_the_injected_clock(podero_api, ada):
    podero_api.sim.token_lifetime = 100
    podero_api.auth = {"Authorization": "Bearer " + (await podero_api.token())["access_token"]}
    podero_api.clock.advance(99)
    assert (await podero_api.get(podero_api.wallbox_path(**ada))).status == 200
    podero_api.clock.advance(1)
    resp = await podero_api.get(podero_api.wallbox_path(**ada))
    assert resp.status == 401
    assert await resp.json() == {"detail": "Unauthorized"}


async def test_the_password_grant_issues_the_same_token_shape(podero_api):
    resp = await podero_api.client.post(
        f"{API}/auth/token",
        json={"grant_type": "password", "username": "sim-user", "password": "sim-password"},
    )
    assert resp.status == 200
    assert list(await resp.json()) == ["access_token", "expires_in", "token_type", "scope"]
    bad = await podero_api.client.post(
        f"{API}/auth/token", json={"grant_type": "password", "username": "sim-user", "password": "nope"}
    )
    assert bad.status == 400
    assert (await bad.json())["error"] == "invalid_grant"
    assert podero_api.sim.token_requests == 3  # the fixture's token plus these two


@pytest.mark.parametrize(
    "header", [None, "Bearer not-a-token", "Basic abc"], ids=["none", "unknown", "basic"]
)
async def test_api_calls_without_a_valid_bearer_get_401(podero_api, ada, header):
    headers = {"Authorization": header} if header else {}
    resp = await podero_api.client.get(API + podero_api.wallbox_path(**ada), headers=headers)
    assert resp.status == 401
    assert await resp.json() == {"detail": "Unauthorized"}


async def test_revoked_tokens_are_refused_until_a_new_one_is_fetched(podero_api, ada):
    podero_api.sim.revoke_tokens()
    assert (await podero_api.get(podero_api.wallbox_path(**ada))).status == 401
    podero_api.auth = {"Authorization": "Bearer " + (await podero_api.token())["access_token"]}
    assert (await podero_api.get(podero_api.wallbox_path(**ada))).status == 200


# ------------------------------------------------------------------------------------------ wallbox


async def test_a_wallbox_read_has_every_seed_002_key_in_order_and_consistent_values(podero_api, ada):
    body = await wallbox(podero_api, ada)
    assert list(body) == list(WALLBOX_KEYS)
    assert body.keys() >= REQUIRED
    assert body["id"] == ada["wallbox_id"]
    assert body["owner"] == {
        "id": ada["user_id"], "email": "ada@example.com", "first_name": "Ada",
        "last_name": "Lovelace", "external_id": None,
    }  # fmt: skip
    assert set(body["device_model"]) >= {"device_type", "manufacturer", "model"}
    assert (body["mode"], body["connection"]) == ("PLUGGED_IN", "online")
    assert (body["action_needed"], body["has_notification"], body["actions"]) == (False, False, [])
    assert body["deleted_at"] is None
    assert body["lifecycle_error"] is None
    assert body["updated_at"] == "2026-11-22T21:00:00Z"
    assert isinstance(body["consumption_last_day_kwh"], str)  # Decimal as a JSON string
    assert isinstance(body["consumption_last_week_kwh"], float)


async def test_two_reads_differ_only_in_volatile_fields_and_resigned_urls(podero_api, ada):
    cue = podero_api.sim.add_action(ada["wallbox_id"], code="reauthenticate")
    first = await wallbox(podero_api, ada)
    podero_api.clock.advance(timedelta(minutes=5))
    second = await wallbox(podero_api, ada)

    changed = {k for k in WALLBOX_KEYS if first[k] != second[k]}
    assert changed == {k for k in VOLATILE if first[k] is not None} | {"actions"}
    assert "updated_at" in changed
    [a1], [a2] = first["actions"], second["actions"]
    assert a1["code"] == a2["code"] == "reauthenticate"
    assert a1["resolution_link"]["required_parameters"] == a2["resolution_link"]["required_parameters"]
    for action in (a1, a2):
        assert re.fullmatch(rf"{API}/cues/{cue}/resolve\?secret=[\w-]+", action["resolution_link"]["url"])
    assert a1["resolution_link"]["url"] != a2["resolution_link"]["url"]
    assert second["updated_at"] == "2026-11-22T21:05:00Z"


async def test_even_reads_at_the_same_instant_get_a_fresh_secret(podero_api, ada):
    podero_api.sim.add_action(ada["wallbox_id"], code="reauthenticate")
    first, second = await wallbox(podero_api, ada), await wallbox(podero_api, ada)
    assert first["actions"] != second["actions"]
    assert {k: v for k, v in first.items() if k != "actions"} == {
        k: v for k, v in second.items() if k != "actions"
    }


@pytest.mark.parametrize(
    ("fields", "mode", "connection"),
    [
        pytest.param({}, "READY", "online", id="idle"),
        pytest.param({"is_plugged_in": True}, "PLUGGED_IN", "online", id="plugged"),
        pytest.param({"is_plugged_in": True, "is_charging": True}, "CHARGING", "online", id="charging"),
        pytest.param(
            {"is_authenticated": False, "is_charging": True}, "UNAVAILABLE", "never_connected", id="unauth"
        ),
        pytest.param({"is_plugged_in": None}, "UNKNOWN", "online", id="unknown-input"),
        pytest.param({"is_ocpp_connected": False}, "READY", "offline", id="ocpp-offline"),
        pytest.param({"ocpp_connected_last_updated_at": None}, "READY", "never_connected", id="never-seen"),
    ],
)
async def test_mode_and_connection_follow_the_assumed_truth_tables(podero_api, ada, fields, mode, connection):
    podero_api.sim.update_wallbox(ada["wallbox_id"], **{"is_plugged_in": False, **fields})
    body = await wallbox(podero_api, ada)
    assert (body["mode"], body["connection"]) == (mode, connection)


async def test_a_reauthenticate_action_unauthenticates_until_resolved(podero_api, ada):
    podero_api.sim.add_action(ada["wallbox_id"], code="reauthenticate")
    body = await wallbox(podero_api, ada)
    assert (body["is_authenticated"], body["action_needed"], body["mode"]) == (False, True, "UNAVAILABLE")
    assert body["has_notification"] is False

    podero_api.sim.resolve_action(ada["wallbox_id"], "reauthenticate")
    body = await wallbox(podero_api, ada)
    assert (body["is_authenticated"], body["action_needed"], body["mode"]) == (True, False, "PLUGGED_IN")
    assert body["actions"] == []
    with pytest.raises(KeyError):
        podero_api.sim.resolve_action(ada["wallbox_id"], "reauthenticate")


async def test_an_information_action_raises_has_notification_and_carries_its_message(podero_api, ada):
    podero_api.sim.add_action(ada["wallbox_id"], code="information", message="Firmware updated")
    podero_api.clock.advance(60)
    body = await wallbox(podero_api, ada)
    assert (body["action_needed"], body["has_notification"], body["is_authenticated"]) == (True, True, True)
    [item] = body["actions"]
    assert list(item) == ["code", "resolution_link", "metadata", "sent_at"]
    assert item["metadata"] == {"message": "Firmware updated"}
    assert item["sent_at"] == "2026-11-22T21:00:00Z"  # when it was sent, not when it was read


async def test_reporting_a_cue_outcome_removes_it_on_success_and_keeps_it_on_fail(podero_api, ada):
    cue = podero_api.sim.add_action(ada["wallbox_id"], code="reauthenticate")
    url = (await wallbox(podero_api, ada))["actions"][0]["resolution_link"]["url"]
    secret = url.split("secret=")[1]
    state = f"{API}/cues/{cue}/state"

    resp = await podero_api.client.post(state, params={"secret": secret}, json={"state": "fail"})
    assert (resp.status, await resp.json()) == (200, {"action_id": cue})
    assert (await wallbox(podero_api, ada))["action_needed"] is True

    bad = await podero_api.client.post(state, params={"secret": secret}, json={"state": "maybe"})
    assert bad.status == 422
    assert (await bad.json())["detail"][0]["loc"][-1] == "state"

    wrong = await podero_api.client.post(state, params={"secret": "forged"}, json={"state": "success"})
    assert wrong.status == 401

    resp = await podero_api.client.post(state, params={"secret": secret}, json={"state": "success"})
    assert resp.status == 200
    body = await wallbox(podero_api, ada)
    assert (body["action_needed"], body["is_authenticated"]) == (False, True)
    gone = await podero_api.client.post(state, params={"secret": secret}, json={"state": "success"})
    assert (gone.status, await gone.json()) == (404, {"detail": "Not Found"})


async def test_a_resolution_secret_expires_an_hour_after_issuance(podero_api, ada):
    cue = podero_api.sim.add_action(ada["wallbox_id"], code="reauthenticate")
    url = (await wallbox(podero_api, ada))["actions"][0]["resolution_link"]["url"]
    podero_api.clock.advance(timedelta(hours=1))
    resp = await podero_api.client.post(url, json={"successUrl": "https://a", "cancelUrl": "https://b"})
    assert resp.status == 401
    fresh = (await wallbox(podero_api, ada))["actions"][0]["resolution_link"]["url"]
    resp = await podero_api.client.post(fresh, json={"successUrl": "https://a", "cancelUrl": "https://b"})
    assert resp.status == 200
    assert cue in (await resp.json())["redirect_url"]


async def test_a_soft_deleted_wallbox_is_404_unless_include_deleted(podero_api, ada):
    podero_api.clock.advance(30)
    podero_api.sim.soft_delete_wallbox(ada["wallbox_id"])
    path = podero_api.wallbox_path(**ada)
    resp = await podero_api.get(path)
    assert (resp.status, await resp.json()) == (404, {"detail": "Not Found"})
    assert (await podero_api.get(path, include_deleted="false")).status == 404
    body = await wallbox(podero_api, ada, include_deleted="true")
    assert body["deleted_at"] == "2026-11-22T21:00:30Z"


@pytest.mark.parametrize("which", ["org", "user", "wallbox"])
async def test_a_wallbox_under_another_org_or_user_or_unknown_is_404(podero_api, ada, which):
    other = str(uuid.uuid4())
    if which == "user":
        podero_api.sim.add_user(user_id=other, email="eve@example.com")
    ids = {"org_id": ORG, **ada, f"{which}_id": other}
    resp = await podero_api.get(podero_api.wallbox_path(**ids))
    assert (resp.status, await resp.json()) == (404, {"detail": "Not Found"})


async def test_malformed_ids_and_query_values_get_a_ninja_422_listing_every_problem(podero_api, ada):
    resp = await podero_api.get(f"/org/{ORG}/users/not-a-uuid/wallboxes/xyz", include_deleted="maybe")
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert [d["loc"] for d in detail] == [
        ["path", "user_id"],
        ["path", "wallbox_id"],
        ["query", "include_deleted"],
    ]
    assert [d["type"] for d in detail] == ["uuid_parsing", "uuid_parsing", "bool_parsing"]
    assert all(d["msg"].startswith("Input should be a valid") for d in detail)


async def test_auth_is_checked_before_validation(podero_api):
    resp = await podero_api.client.get(f"{API}/org/{ORG}/users/bad/wallboxes/bad")
    assert resp.status == 401


async def test_a_wrong_method_gets_the_ninja_405_body(podero_api, ada):
    resp = await podero_api.client.delete(API + podero_api.wallbox_path(**ada), headers=podero_api.auth)
    assert (resp.status, await resp.json()) == (405, {"detail": "Method not allowed"})


def test_scenario_updates_reject_unknown_and_derived_fields(podero_api, ada):
    with pytest.raises(ValueError, match="is_charing"):
        podero_api.sim.update_wallbox(ada["wallbox_id"], is_charing=True)
    with pytest.raises(ValueError, match="mode"):
        podero_api.sim.update_wallbox(ada["wallbox_id"], mode="CHARGING")
    with pytest.raises(ValueError, match="lifecycle_error"):
        podero_api.sim.update_wallbox(ada["wallbox_id"], lifecycle_error="boom")
    podero_api.sim.update_wallbox(ada["wallbox_id"], lifecycle_state="error", lifecycle_error="token revoked")
    podero_api.sim.update_wallbox(ada["wallbox_id"], lifecycle_state="authenticated")
    assert podero_api.sim.wallbox(ada["wallbox_id"])["lifecycle_error"] is None


async def test_charge_rate_is_a_json_number_like_pydantic_prints_it(podero_api, ada):
    podero_api.sim.update_wallbox(ada["wallbox_id"], is_charging=True, charge_rate_w=7200)
    body = await wallbox(podero_api, ada)
    assert (body["is_charging"], body["charge_rate_w"], body["mode"]) == (True, 7200.0, "CHARGING")


# ------------------------------------------------------------------------------------------ lists, onboarding


async def test_users_and_their_wallboxes_are_plain_arrays_without_deleted_boxes(podero_api, ada):
    second = podero_api.sim.add_wallbox(ada["user_id"])
    podero_api.sim.soft_delete_wallbox(ada["wallbox_id"])

    users = await (await podero_api.get(f"/org/{ORG}/users")).json()
    assert [u["id"] for u in users] == [ada["user_id"]]
    assert users[0]["email"] == "ada@example.com"

    path = f"/org/{ORG}/users/{ada['user_id']}/wallboxes"
    live = await (await podero_api.get(path)).json()
    assert [b["id"] for b in live] == [second]
    assert list(live[0]) == list(WALLBOX_KEYS)
    everything = await (await podero_api.get(path, include_deleted="true")).json()
    assert {b["id"] for b in everything} == {ada["wallbox_id"], second}

    other_org = await podero_api.get(f"/org/{uuid.uuid4()}/users")
    assert other_org.status == 404
    unknown_user = await podero_api.get(f"/org/{ORG}/users/{uuid.uuid4()}/wallboxes")
    assert unknown_user.status == 404


async def test_an_onboarding_session_has_the_seed_000_shape_and_finishes_with_an_object_id(podero_api, ada):
    sid = podero_api.sim.add_onboarding_session(ada["user_id"], language="de")
    resp = await podero_api.get(f"/device-onboarding/{sid}")
    body = await resp.json()
    assert list(body) == ONBOARDING_KEYS
    assert (body["id"], body["user"], body["object_id"]) == (sid, ada["user_id"], None)
    assert body["expiration_date"] == "2026-11-23"  # a date: valid until the end of the next day
    assert body["language"] == "de"

    created = podero_api.sim.finish_onboarding(sid)
    body = await (await podero_api.get(f"/device-onboarding/{sid}")).json()
    assert body["object_id"] == created
    assert (await podero_api.get(podero_api.wallbox_path(ada["user_id"], created))).status == 200

    assert (await podero_api.get(f"/device-onboarding/{uuid.uuid4()}")).status == 404
    assert (await podero_api.get("/device-onboarding/nope")).status == 422


# ------------------------------------------------------------------------------------------ faults, logs


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        pytest.param("status", 503, "application/json", id="status"),
        pytest.param("garbage", 200, "application/json", id="garbage"),
        pytest.param("truncated", 200, "application/json", id="truncated"),
        pytest.param("html", 200, "text/html", id="html"),
    ],
)
async def test_an_injected_fault_is_served_once_then_the_route_recovers(
    podero_api, ada, kind, status, content_type
):
    podero_api.sim.fail("wallbox", kind=kind, status=503)
    path = podero_api.wallbox_path(**ada)
    resp = await podero_api.get(path)
    assert resp.status == status
    assert resp.content_type == content_type
    if kind != "status":
        with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):  # none of these parse as JSON
            await resp.json(content_type=None)
    ok = await podero_api.get(path)
    assert ok.status == 200
    assert list(await ok.json()) == list(WALLBOX_KEYS)


async def test_a_status_fault_repeats_times_and_carries_its_headers(podero_api, ada):
    podero_api.sim.fail("wallbox", status=429, times=2, headers={"Retry-After": "30"})
    path = podero_api.wallbox_path(**ada)
    for _ in range(2):
        resp = await podero_api.get(path)
        assert (resp.status, resp.headers["Retry-After"]) == (429, "30")
    assert (await podero_api.get(path)).status == 200


async def test_a_custom_fault_body_is_sent_verbatim(podero_api, ada):
    podero_api.sim.fail("wallbox", status=200, body=b'{"unexpected": true}')
    resp = await podero_api.get(podero_api.wallbox_path(**ada))
    assert (resp.status, await resp.read()) == (200, b'{"unexpected": true}')


async def test_a_slow_fault_trips_a_client_timeout(podero_api, ada):
    podero_api.sim.fail("wallbox", kind="slow", delay=0.5)
    url = API + podero_api.wallbox_path(**ada)
    with pytest.raises(asyncio.TimeoutError):
        await podero_api.client.get(url, headers=podero_api.auth, timeout=aiohttp.ClientTimeout(total=0.05))
    assert (await podero_api.get(podero_api.wallbox_path(**ada))).status == 200


async def test_token_faults_are_counted_like_any_token_request(podero_api):
    podero_api.sim.fail("token", status=503)
    resp = await podero_api.client.post(
        "/oauth2/token/", json={"grant_type": "client_credentials"}, headers={"Authorization": BASIC}
    )
    assert resp.status == 503
    await podero_api.token()
    assert podero_api.sim.token_requests == 3


def test_faults_name_a_known_route_and_kind(podero_api):
    with pytest.raises(ValueError, match="wallbox"):
        podero_api.sim.fail("wallboxes")
    with pytest.raises(ValueError, match="kind"):
        podero_api.sim.fail("wallbox", kind="explode")


async def test_the_request_log_records_method_and_path_of_api_calls(podero_api, ada):
    await podero_api.get(podero_api.wallbox_path(**ada), include_deleted="true")
    assert podero_api.sim.requests == [
        ("POST", "/oauth2/token/"),
        ("GET", API + podero_api.wallbox_path(**ada)),
    ]


async def test_admin_endpoints_drive_the_simulator_over_http(podero_api, ada):
    client, wid = podero_api.client, ada["wallbox_id"]
    resp = await client.post(f"/_sim/wallboxes/{wid}", json={"is_charging": True, "charge_rate_w": 7200})
    assert resp.status == 200
    assert (await resp.json())["mode"] == "CHARGING"
    resp = await client.post(f"/_sim/wallboxes/{wid}/actions", json={"code": "reauthenticate"})
    cue = (await resp.json())["cue_id"]
    assert (await wallbox(podero_api, ada))["actions"][0]["resolution_link"]["url"].count(cue) == 1
    resp = await client.delete(f"/_sim/wallboxes/{wid}/actions/reauthenticate")
    assert (await resp.json()) == {"resolved": [cue]}
    resp = await client.post("/_sim/faults/wallbox", json={"status": 502})
    assert resp.status == 204
    assert (await podero_api.get(podero_api.wallbox_path(**ada))).status == 502

    assert (await client.post(f"/_sim/wallboxes/{wid}", json={"bogus": 1})).status == 400
    assert (await client.post(f"/_sim/wallboxes/{uuid.uuid4()}", json={})).status == 404
    state = await (await client.get("/_sim/state")).json()
    assert wid in state["users"][ada["user_id"]]["wallboxes"]
    assert all(path.startswith(API) or path == "/oauth2/token/" for _, path in podero_api.sim.requests)
