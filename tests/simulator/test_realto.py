"""The Realto simulator is faithful to providers.md §2/§4: JWT bearer tokens expiring on the injected clock,
the seed-003 session shape, continuation-token paging that stays stable, ProblemDetails-style errors,
scenario walks and fault injection (including a fault on one page of a listing)."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from bridge.clock import ManualClock
from bridge.simulator.realto import API, REQUEST_KEYS, SESSION_KEYS, SESSIONS, RealtoSimulator

CREDENTIALS = {"clientId": "sim-client", "clientSecret": "sim-secret"}


@dataclass
class Realto:
    sim: RealtoSimulator
    client: TestClient
    clock: ManualClock
    auth: dict[str, str]

    async def token(self, **body: Any) -> dict[str, Any]:
        resp = await self.client.post(f"{API}/authentication", json=body or CREDENTIALS)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def get(self, path: str, **params: str) -> aiohttp.ClientResponse:
        return await self.client.get(path, params=params, headers=self.auth)

    async def page(self, **params: str) -> dict[str, Any]:
        resp = await self.get(SESSIONS, **params)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def follow(self, page: dict[str, Any]) -> aiohttp.ClientResponse:
        """GET the page's absolute `links.next` (the test client only takes the path and query)."""
        url = URL(page["links"]["next"])
        assert url.absolute
        assert (url.host, url.port) == (self.client.host, self.client.port)
        return await self.client.get(url.relative(), headers=self.auth)

    async def next_page(self, page: dict[str, Any]) -> dict[str, Any]:
        resp = await self.follow(page)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def list_all(self, page_size: int, first: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Follow `links.next` to the end; returns the pages."""
        pages = [first or await self.page(pageSize=str(page_size))]
        while pages[-1]["links"]["next"]:
            pages.append(await self.next_page(pages[-1]))
        return pages


@pytest.fixture
async def realto(aiohttp_client) -> Realto:
    clock = ManualClock()
    sim = RealtoSimulator(clock=clock)
    client = await aiohttp_client(sim.app())
    api = Realto(sim=sim, client=client, clock=clock, auth={})
    api.auth = {"Authorization": "Bearer " + (await api.token())["access_token"]}
    return api


def jwt_claims(token: str) -> dict[str, Any]:
    header, payload, signature = token.split(".")
    assert signature
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def ids(pages: list[dict[str, Any]]) -> list[str]:
    return [s["id"] for p in pages for s in p["data"]]


def add_sessions(realto: Realto, n: int) -> list[str]:
    """`n` sessions, two per clock instant, so ordering by (created, id) is exercised."""
    for i in range(n):
        realto.sim.add_session()
        if i % 2:
            realto.clock.advance(1)
    return [s["id"] for s in sorted(map(realto.sim.session, realto.sim.state()["sessions"]), key=_order)]


def _order(session: dict[str, Any]) -> tuple[str, str]:
    return session["created"], session["id"]


# ------------------------------------------------------------------------------------------ tokens


async def test_authentication_returns_a_jwt_whose_exp_is_now_plus_its_lifetime(realto):
    body = await realto.token()
    assert list(body) == ["access_token", "expires_in", "token_type"]
    assert (body["expires_in"], body["token_type"]) == (3599, "Bearer")
    claims = jwt_claims(body["access_token"])
    assert claims["exp"] == int(realto.clock.now().timestamp()) + 3599
    assert claims["iat"] == int(realto.clock.now().timestamp())


async def test_two_tokens_issued_at_the_same_instant_differ(realto):
    first, second = await realto.token(), await realto.token()
    assert first["access_token"] != second["access_token"]
    assert realto.sim.token_requests == 3


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"clientId": "sim-client", "clientSecret": "wrong"}, id="wrong-secret"),
        pytest.param({"clientId": "someone", "clientSecret": "sim-secret"}, id="wrong-client"),
        pytest.param({}, id="missing"),
        pytest.param({"clientId": None, "clientSecret": 7}, id="wrong-types"),
    ],
)
async def test_bad_credentials_get_401_with_the_assumed_body(realto, body):
    resp = await realto.client.post(f"{API}/authentication", json=body)
    assert resp.status == 401
    assert await resp.json() == {"title": "Unauthorized", "status": 401}


async def test_a_non_json_authentication_body_gets_400(realto):
    resp = await realto.client.post(f"{API}/authentication", data=b"clientId=sim-client")
    assert resp.status == 400
    assert (await resp.json())["status"] == 400


async def test_a_token_works_until_its_lifetime_ends_on_the_injected_clock(realto):
    sid = realto.sim.add_session()
    realto.clock.advance(3598)
    assert (await realto.get(f"{SESSIONS}/{sid}")).status == 200
    realto.clock.advance(1)
    resp = await realto.get(f"{SESSIONS}/{sid}")
    assert resp.status == 401
    assert await resp.json() == {"title": "Unauthorized", "status": 401}
    assert 'error="invalid_token"' in resp.headers["WWW-Authenticate"]
    assert "expired" in resp.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    "header",
    [
        pytest.param({}, id="none"),
        pytest.param({"Authorization": "Bearer nope.nope.nope"}, id="unknown-jwt"),
        pytest.param({"Authorization": "Basic c2ltLWNsaWVudDpzaW0tc2VjcmV0"}, id="basic"),
    ],
)
async def test_api_calls_without_a_valid_bearer_get_401(realto, header):
    realto.auth = header
    for path in (SESSIONS, f"{SESSIONS}/{uuid.uuid4()}"):
        resp = await realto.get(path)
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_revoked_tokens_are_refused_until_a_new_one_is_fetched(realto):
    realto.sim.revoke_tokens()
    assert (await realto.get(SESSIONS)).status == 401
    realto.auth = {"Authorization": "Bearer " + (await realto.token())["access_token"]}
    assert (await realto.get(SESSIONS)).status == 200


async def test_a_shorter_token_lifetime_is_reported_and_enforced(realto):
    realto.sim.token_lifetime = 60
    body = await realto.token()
    assert body["expires_in"] == 60
    realto.clock.advance(60)
    resp = await realto.client.get(SESSIONS, headers={"Authorization": "Bearer " + body["access_token"]})
    assert resp.status == 401


# ------------------------------------------------------------------------------------------ shapes


async def test_a_pending_session_has_the_seed_003_shape_with_a_redirect_action(realto):
    sid = realto.sim.add_session(manufacturer="Tesla", vin="5YJ3E1EA7KF000001", company_name="Acme")
    resp = await realto.get(f"{SESSIONS}/{sid}")
    assert resp.status == 200
    body = await resp.json()
    assert list(body) == list(SESSION_KEYS)
    assert (body["id"], body["manufacturer"], body["vin"], body["companyName"]) == (
        sid,
        "Tesla",
        "5YJ3E1EA7KF000001",
        "Acme",
    )
    assert body["expired"] is False
    assert body["created"] == "2026-11-22T21:00:00Z"
    assert body["url"] == f"https://onboarding.realto-simulator.invalid/guided/{sid}"
    request = body["onboardingRequest"]
    assert list(request) == list(REQUEST_KEYS)
    assert (request["status"], request["requestType"], request["errors"]) == ("Pending", "Entity", [])
    assert list(request["action"]) == ["documentationLink", "redirectLink", "type"]
    assert request["action"]["type"] == "Redirect"
    assert request["action"]["redirectLink"].startswith("https://")
    assert list(request["data"]) == ["collective", "entity", "tenant", "user", "client"]
    entity = request["data"]["entity"]
    assert entity["id"] is None
    assert (entity["type"], entity["information"]["vin"]) == ("EV", "5YJ3E1EA7KF000001")
    assert request["data"]["collective"]["type"] == "Household"
    assert request["data"]["tenant"]["type"] == "Company"
    for value in (request["id"], request["principalId"], entity["collectiveId"]):
        uuid.UUID(value)


async def test_a_consent_session_points_at_documentation_instead_of_a_redirect(realto):
    sid = realto.sim.add_session(action_type="Consent")
    action = (await (await realto.get(f"{SESSIONS}/{sid}")).json())["onboardingRequest"]["action"]
    assert action["type"] == "Consent"
    assert action["documentationLink"].startswith("https://docs.realto.io/")
    assert action["redirectLink"] is None


async def test_generated_vins_are_seventeen_characters_and_distinct(realto):
    vins = [realto.sim.session(realto.sim.add_session())["vin"] for _ in range(3)]
    assert len(set(vins)) == 3
    assert all(re.fullmatch(r"[A-HJ-NPR-Z0-9]{17}", v) for v in vins)


async def test_reads_are_identical_between_changes(realto):
    sid = realto.sim.add_session()
    first = await (await realto.get(f"{SESSIONS}/{sid}")).read()
    realto.clock.advance(600)
    assert await (await realto.get(f"{SESSIONS}/{sid}")).read() == first


# ------------------------------------------------------------------------------------------ paging


async def test_paging_walks_three_pages_in_created_then_id_order(realto):
    expected = add_sessions(realto, 7)
    pages = await realto.list_all(3)
    assert [len(p["data"]) for p in pages] == [3, 3, 1]
    assert ids(pages) == expected
    for page in pages[:-1]:
        assert list(page) == ["data", "links", "meta"]
        assert page["meta"]["pageSize"] == 3
        token = page["meta"]["continuationToken"]
        next_url = URL(page["links"]["next"])
        assert next_url.absolute
        assert next_url.path == SESSIONS
        assert next_url.query["continuationToken"] == token
        assert next_url.query["pageSize"] == "3"
    assert pages[-1]["links"] == {"next": None}
    assert pages[-1]["meta"] == {"continuationToken": None, "pageSize": 3}


async def test_passing_the_meta_token_verbatim_gives_the_same_page_as_links_next(realto):
    add_sessions(realto, 5)
    first = await realto.page(pageSize="2")
    via_token = await realto.page(pageSize="2", continuationToken=first["meta"]["continuationToken"])
    via_link = await realto.next_page(first)
    assert via_token == via_link
    assert len(via_token["data"]) == 2


async def test_a_listing_stays_stable_while_sessions_come_and_go(realto):
    expected = add_sessions(realto, 6)
    first = await realto.page(pageSize="2")
    newcomer = realto.sim.add_session()
    realto.sim.remove(expected[3])
    realto.sim.succeed(expected[4])
    rest = await realto.list_all(2, first)
    seen = ids(rest)
    assert seen == [i for i in expected if i != expected[3]]  # nothing repeated, the removed one skipped
    assert newcomer not in seen
    changed = next(s for p in rest for s in p["data"] if s["id"] == expected[4])
    assert changed["onboardingRequest"]["status"] == "Succeeded"  # content is current, membership fixed
    assert newcomer in ids(await realto.list_all(25))


async def test_an_empty_listing_is_one_page_without_a_token(realto):
    assert await realto.page() == {
        "data": [],
        "links": {"next": None},
        "meta": {"continuationToken": None, "pageSize": 25},
    }


@pytest.mark.parametrize(("asked", "served"), [("500", 100), ("0", 1), ("-3", 1), ("100", 100)])
async def test_page_size_is_clamped_to_1_through_100(realto, asked, served):
    add_sessions(realto, 3)
    page = await realto.page(pageSize=asked)
    assert page["meta"]["pageSize"] == served
    assert len(page["data"]) == min(served, 3)


async def test_a_default_page_holds_25_sessions(realto):
    add_sessions(realto, 26)
    page = await realto.page()
    assert (len(page["data"]), page["meta"]["pageSize"]) == (25, 25)
    assert page["meta"]["continuationToken"]


async def test_a_non_integer_page_size_gets_a_validation_problem(realto):
    resp = await realto.get(SESSIONS, pageSize="many")
    assert resp.status == 400
    body = await resp.json()
    assert (body["status"], body["errors"]) == (400, {"pageSize": ["The value 'many' is not valid."]})


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("!!!not-base64!!!", id="garbled"),
        pytest.param(base64.urlsafe_b64encode(b'{"n":"nope","o":2,"p":2}').decode(), id="unknown-listing"),
        pytest.param(base64.urlsafe_b64encode(b"[1, 2]").decode(), id="not-an-object"),
    ],
)
async def test_a_garbled_or_unknown_continuation_token_gets_400(realto, token):
    add_sessions(realto, 3)
    resp = await realto.get(SESSIONS, continuationToken=token)
    assert resp.status == 400
    body = await resp.json()
    assert (body["status"], body["errors"][0]["code"]) == (400, "InvalidContinuationToken")


async def test_a_fault_on_page_3_of_5_hits_only_that_page_and_its_retry_succeeds(realto):
    expected = add_sessions(realto, 10)
    realto.sim.fail("list", status=500, on_page=3)
    pages = [await realto.page(pageSize="2")]
    pages.append(await realto.next_page(pages[-1]))
    assert (await realto.follow(pages[-1])).status == 500
    pages += await realto.list_all(2, await realto.next_page(pages[-1]))  # the retry of page 3 succeeds
    assert len(pages) == 5
    assert ids(pages) == expected


async def test_a_page_fault_repeats_times_then_a_new_listing_meets_it_again_only_on_that_page(realto):
    add_sessions(realto, 4)
    realto.sim.fail("list", status=503, on_page=2, times=3, headers={"Retry-After": "7"})
    first = await realto.page(pageSize="2")
    for _ in range(2):
        resp = await realto.follow(first)
        assert (resp.status, resp.headers["Retry-After"]) == (503, "7")
    again = await realto.page(pageSize="2")  # page 1 of a fresh listing is untouched
    assert (await realto.follow(again)).status == 503
    assert (await realto.follow(again)).status == 200


def test_on_page_is_only_for_the_list_route_and_counts_from_one(realto):
    with pytest.raises(ValueError, match="list"):
        realto.sim.fail("session", on_page=2)
    with pytest.raises(ValueError, match="from 1"):
        realto.sim.fail("list", on_page=0)


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid"], ids=["unknown", "malformed"])
async def test_an_unknown_or_malformed_session_id_gets_a_404_problem(realto, session_id):
    resp = await realto.get(f"{SESSIONS}/{session_id}")
    assert resp.status == 404
    body = await resp.json()
    assert (body["title"], body["status"]) == ("Not Found", 404)


# ------------------------------------------------------------------------------------------ scenarios


async def session(realto: Realto, sid: str) -> dict[str, Any]:
    resp = await realto.get(f"{SESSIONS}/{sid}")
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_session_walks_from_pending_to_succeeded_with_an_entity(realto):
    sid = realto.sim.add_session()
    entity_id = str(uuid.uuid4())
    assert realto.sim.succeed(sid, entity_id=entity_id) == entity_id
    request = (await session(realto, sid))["onboardingRequest"]
    assert (request["status"], request["action"], request["errors"]) == ("Succeeded", None, [])
    assert request["data"]["entity"]["id"] == entity_id


async def test_succeeding_without_an_entity_id_invents_one(realto):
    sid = realto.sim.add_session()
    entity_id = realto.sim.succeed(sid)
    assert (await session(realto, sid))["onboardingRequest"]["data"]["entity"]["id"] == str(
        uuid.UUID(entity_id)
    )


async def test_a_failed_session_carries_its_errors_and_no_action(realto):
    sid = realto.sim.add_session()
    realto.sim.fail_session(sid, "ConsentDenied", "The owner declined.")
    request = (await session(realto, sid))["onboardingRequest"]
    assert request["status"] == "Failed"
    assert request["action"] is None
    assert request["errors"] == [{"code": "ConsentDenied", "message": "The owner declined."}]


async def test_a_canceled_session_has_no_action(realto):
    sid = realto.sim.add_session()
    realto.sim.cancel(sid)
    request = (await session(realto, sid))["onboardingRequest"]
    assert (request["status"], request["action"]) == ("Canceled", None)


async def test_expiry_flips_by_hand_or_on_the_injected_clock_while_still_pending(realto):
    by_hand = realto.sim.add_session()
    timed = realto.sim.add_session(expires_in=600)
    realto.sim.expire(by_hand)
    assert (await session(realto, by_hand))["expired"] is True
    realto.clock.advance(599)
    assert (await session(realto, timed))["expired"] is False
    realto.clock.advance(1)
    body = await session(realto, timed)
    assert body["expired"] is True
    assert body["onboardingRequest"]["status"] == "Pending"


async def test_a_removed_session_is_404_and_gone_from_listings(realto):
    keep, gone = realto.sim.add_session(), realto.sim.add_session()
    realto.sim.remove(gone)
    assert (await realto.get(f"{SESSIONS}/{gone}")).status == 404
    assert ids([await realto.page()]) == [keep]
    with pytest.raises(KeyError):
        realto.sim.succeed(gone)


def test_scenario_calls_reject_duplicates_and_unknown_action_types(realto):
    sid = realto.sim.add_session()
    with pytest.raises(ValueError, match="exists"):
        realto.sim.add_session(session_id=sid)
    with pytest.raises(ValueError, match="action type"):
        realto.sim.add_session(action_type="Magic")


# ------------------------------------------------------------------------------------------ faults


@pytest.mark.parametrize(
    ("kind", "status", "content_type"),
    [
        pytest.param("status", 502, "application/json", id="status"),
        pytest.param("garbage", 200, "application/json", id="garbage"),
        pytest.param("truncated", 200, "application/json", id="truncated"),
        pytest.param("html", 200, "text/html", id="html"),
    ],
)
async def test_an_injected_fault_is_served_once_then_the_route_recovers(realto, kind, status, content_type):
    sid = realto.sim.add_session()
    realto.sim.fail("session", kind=kind, status=502)
    resp = await realto.get(f"{SESSIONS}/{sid}")
    assert (resp.status, resp.content_type) == (status, content_type)
    if kind != "status":
        with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
            await resp.json(content_type=None)
    assert list(await session(realto, sid)) == list(SESSION_KEYS)


@pytest.mark.parametrize("style", ["seconds", "http-date"])
async def test_a_429_carries_retry_after_as_seconds_or_an_http_date(realto, style):
    value = (
        "30"
        if style == "seconds"
        else format_datetime(realto.clock.now() + timedelta(seconds=30), usegmt=True)
    )
    realto.sim.fail("list", status=429, headers={"Retry-After": value})
    resp = await realto.get(SESSIONS)
    assert (resp.status, resp.headers["Retry-After"]) == (429, value)
    assert (await realto.get(SESSIONS)).status == 200


async def test_a_slow_fault_trips_a_client_timeout(realto):
    realto.sim.fail("list", kind="slow", delay=0.3)
    with pytest.raises(asyncio.TimeoutError):
        await realto.client.get(SESSIONS, headers=realto.auth, timeout=aiohttp.ClientTimeout(total=0.05))
    assert (await realto.get(SESSIONS)).status == 200


async def test_the_auth_route_can_fail_n_times_and_every_try_is_counted(realto):
    realto.sim.fail("auth", status=503, times=2)
    for _ in range(2):
        assert (await realto.client.post(f"{API}/authentication", json=CREDENTIALS)).status == 503
    await realto.token()
    assert realto.sim.token_requests == 4


def test_faults_name_a_known_route_and_kind(realto):
    with pytest.raises(ValueError, match="session"):
        realto.sim.fail("sessions")
    with pytest.raises(ValueError, match="kind"):
        realto.sim.fail("list", kind="explode")


async def test_the_request_log_records_method_and_path(realto):
    sid = realto.sim.add_session()
    await realto.get(SESSIONS, pageSize="5")
    await realto.get(f"{SESSIONS}/{sid}")
    assert realto.sim.requests == [
        ("POST", f"{API}/authentication"),
        ("GET", SESSIONS),
        ("GET", f"{SESSIONS}/{sid}"),
    ]


async def test_admin_endpoints_drive_the_simulator_over_http(realto):
    client = realto.client
    resp = await client.post("/_sim/sessions", json={"manufacturer": "BMW", "vin": "WBA00000000000001"})
    created = await resp.json()
    sid = created["id"]
    assert (created["manufacturer"], created["onboardingRequest"]["status"]) == ("BMW", "Pending")
    entity = (await (await client.post(f"/_sim/sessions/{sid}/succeed", json={})).json())["entity_id"]
    assert (await session(realto, sid))["onboardingRequest"]["data"]["entity"]["id"] == entity
    other = (await (await client.post("/_sim/sessions", json={})).json())["id"]
    resp = await client.post(f"/_sim/sessions/{other}/fail", json={"code": "X", "message": "y"})
    assert resp.status == 204
    assert (await client.post(f"/_sim/sessions/{other}/expire")).status == 204
    assert (await client.post("/_sim/faults/list", json={"status": 500, "on_page": 1})).status == 204
    assert (await realto.get(SESSIONS)).status == 500
    state = await (await client.get("/_sim/state")).json()
    assert state["sessions"][other] == {"status": "Failed", "expired": True, "entity_id": None}
    assert (await client.delete(f"/_sim/sessions/{other}")).status == 204
    assert (await client.post(f"/_sim/sessions/{other}/cancel")).status == 404
    early = await client.post("/_sim/sessions", json={"created": "2026-01-01T00:00:00Z"})
    assert ids([await realto.page()])[0] == (await early.json())["id"]  # oldest first
    assert (await client.post("/_sim/sessions", json={"created": "2026-01-01T00:00:00"})).status == 400
    assert (await client.post("/_sim/revoke-tokens")).status == 204
    assert (await realto.get(SESSIONS)).status == 401
