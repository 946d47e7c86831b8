"""Podero client against the Podero simulator: wallbox detail, schema drift, 404, tokens (expiry,
password grant, token_url), rate limit, body cap, discovery and device onboarding sessions."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bridge import errors
from bridge.clock import ManualClock
from bridge.config.models import PoderoConfig
from bridge.model import ResourceKey, Watch
from bridge.poll.diff import meaningful_digest
from bridge.providers.podero import SOURCE_ONBOARDING, SOURCE_WALLBOX, PoderoProvider
from bridge.simulator.podero import API, PoderoSimulator

ORG = "00000000-0000-4000-8000-000000000001"
SECRET = "sim-secret"


@dataclass
class Podero:
    """The simulator, served, plus what arrived at it: (monotonic time, method, path, query)."""

    sim: PoderoSimulator
    url: str
    arrivals: list[tuple[float, str, str, dict[str, str]]] = field(default_factory=list)

    def api_requests(self) -> list[tuple[float, str, str, dict[str, str]]]:
        return [a for a in self.arrivals if a[2].startswith(API) and not a[2].endswith("/auth/token")]


@pytest.fixture
async def podero(aiohttp_server, clock: ManualClock) -> Podero:
    sim = PoderoSimulator(clock=clock, org_id=ORG)
    app = sim.app()
    served = Podero(sim=sim, url="")

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        # Real time: the rate limiter runs on the event loop, not on the injected clock.
        served.arrivals.append((time.monotonic(), request.method, request.path, dict(request.query)))
        return await handler(request)

    app.middlewares.insert(0, record)
    server = await aiohttp_server(app)
    served.url = str(server.make_url("")).rstrip("/")
    sim.base_url = served.url
    return served


def config(url: str, **overrides: Any) -> PoderoConfig:
    data: dict[str, Any] = {
        "kind": "podero",
        "base_url": url,
        "client_id": "sim-client",
        "client_secret": SECRET,
        "org_id": ORG,
        "max_requests_per_second": 1000,
    }
    return PoderoConfig.model_validate({**data, **overrides})


@pytest.fixture
async def make_provider(clock: ManualClock) -> AsyncIterator[Callable[..., PoderoProvider]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(cfg: PoderoConfig) -> PoderoProvider:
        # As app.py builds it: one session per provider, carrying the provider's token middleware.
        session = aiohttp.ClientSession(middlewares=(PoderoProvider.middleware("podero", cfg, clock),))
        sessions.append(session)
        return PoderoProvider("podero", cfg, session=session, clock=clock)

    yield make
    for session in sessions:
        await session.close()


def wallbox_watch(user_id: str, wallbox_id: str, clock: ManualClock) -> Watch:
    key = ResourceKey(source=SOURCE_WALLBOX, provider="podero", resource_id=wallbox_id)
    return Watch(key=key, params={"user_id": user_id}, created_at=clock.now())


def session_watch(session_id: str, clock: ManualClock) -> Watch:
    key = ResourceKey(source=SOURCE_ONBOARDING, provider="podero", resource_id=session_id)
    return Watch(key=key, created_at=clock.now())


def states(result: Any) -> dict[str, Any]:
    return {o.key.resource_id: o.state for o in result.observations}


def tokens_of(provider: PoderoProvider) -> int:
    middleware = provider.http._session._middlewares[0]  # type: ignore[attr-defined]
    return int(middleware.tokens_fetched)


@pytest.fixture
def ada(podero: Podero) -> tuple[str, str]:
    user = podero.sim.add_user(email="ada@example.com", first_name="Ada")
    return user, podero.sim.add_wallbox(user, is_plugged_in=True)


# --------------------------------------------------------------------------------------- happy path


async def test_a_watched_wallbox_is_read_with_include_deleted_and_stored_as_sent(
    podero, make_provider, ada, clock
):
    user, wb = ada

    result = await make_provider(config(podero.url)).fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    [obs] = result.observations
    assert obs.key == ResourceKey(source=SOURCE_WALLBOX, provider="podero", resource_id=wb)
    assert obs.state == podero.sim.wallbox(wb)  # the same instant on the injected clock: the same body
    assert obs.state["is_plugged_in"] is True
    assert obs.state["owner"]["email"] == "ada@example.com"
    assert not result.failures
    [request] = podero.api_requests()
    assert request[1:] == ("GET", f"{API}/org/{ORG}/users/{user}/wallboxes/{wb}", {"include_deleted": "true"})


async def test_a_soft_deleted_wallbox_is_still_read_with_deleted_at_set(podero, make_provider, ada, clock):
    user, wb = ada
    podero.sim.soft_delete_wallbox(wb)

    result = await make_provider(config(podero.url)).fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert states(result)[wb]["deleted_at"] == clock.now().isoformat().replace("+00:00", "Z")


async def test_a_wallbox_answering_404_is_observed_as_gone_and_its_watch_continues(
    podero, make_provider, ada, clock
):
    user, _ = ada
    missing = "00000000-0000-4000-8000-00000000dead"

    result = await make_provider(config(podero.url)).fetch("wallboxes", [wallbox_watch(user, missing, clock)])

    assert states(result) == {missing: None}  # disappeared for the poller
    assert not result.failures
    assert result.terminal == {}  # a wallbox may come back; only onboarding sessions end


async def test_a_failed_wallbox_fails_only_that_wallbox(podero, make_provider, ada, clock):
    user, wb = ada
    other = podero.sim.add_wallbox(user)
    podero.sim.fail("wallbox", status=503, headers={"Retry-After": "30"})

    result = await make_provider(config(podero.url, max_concurrency=1)).fetch(
        "wallboxes", [wallbox_watch(user, wb, clock), wallbox_watch(user, other, clock)]
    )

    assert list(states(result)) == [other]
    assert isinstance(result.failures[wb], errors.ProviderUnavailable)
    assert result.failures[wb].retry_after == 30.0


# ------------------------------------------------------------------------------------- schema drift

SEED_001_BODY = {
    "connection_status": "ok", "monitoring_status": "ok", "steering_status": "ok",
    "device_model": {
        "device_type": {"short_name": "wallbox", "long_name": "Wallbox"}, "manufacturer": "Easee",
        "model": "Charge Lite", "cloud_service_instructions": None, "cloud_service_signup_link": None,
        "year": 2023, "cloud_service": "3c90c3cc-0d44-4b50-8888-8dd25736052a",
    },
    "owner": {"id": "3c90c3cc-0d44-4b50-8888-8dd25736052a", "email": "ada@example.com", "first_name": "Ada",
              "last_name": None, "external_id": None},
    "created_at": "2023-11-07T05:31:56Z", "updated_at": "2023-11-07T05:31:56Z", "price_zone": "AT",
    "id": "3c90c3cc-0d44-4b50-8888-8dd25736052a", "deleted_at": None, "lifecycle_state": "authenticated",
    "lifecycle_error": None, "building": "3c90c3cc-0d44-4b50-8888-8dd25736052b", "pause_power_until": None,
    "is_pause_power_active": False, "external_device_id": "", "is_authenticated": False,
    "is_smart_optimization_active": False, "optimization_score": 123, "current_mode": None, "comment": None,
    "charge_rate_w": 123, "is_fully_charged": False, "is_plugged_in": False, "is_charging": False,
    "consumption_last_day_kwh": 123, "action_needed": True,
    "actions": [{"code": "reauthenticate",
                 "resolution_link": {"url": "/cues/c1/resolve?secret=x", "required_parameters": ["a"]}}],
}  # fmt: skip


async def test_the_older_seed_001_shape_is_accepted_and_stored_as_sent(podero, make_provider, ada, clock):
    user, wb = ada
    podero.sim.fail("wallbox", status=200, body=orjson.dumps(SEED_001_BODY))

    fetched = await make_provider(config(podero.url)).fetch("wallboxes", [wallbox_watch(user, wb, clock)])
    result = fetched.checked()

    assert not result.failures
    assert states(result)[wb] == SEED_001_BODY  # no `mode`, `connection`, …; `building` kept


async def test_unknown_fields_and_unknown_action_codes_are_kept(podero, make_provider, ada, clock):
    user, wb = ada
    body = podero.sim.wallbox(wb)
    body["is_forecasting_enabled"] = True
    body["battery_guard"] = {"enabled": True, "floor_percent": 20}
    link = {"url": "/x", "required_parameters": []}
    body["actions"] = [{"code": "update_firmware", "resolution_link": link, "metadata": {"version": "5.0"}}]
    del body["charge_rate_w"]  # an optional field missing
    podero.sim.fail("wallbox", status=200, body=orjson.dumps(body))

    fetched = await make_provider(config(podero.url)).fetch("wallboxes", [wallbox_watch(user, wb, clock)])
    result = fetched.checked()  # the schema check is deferred to the poller (run when a field moved)

    assert states(result)[wb] == body


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("id",), 42),
        (("owner", "id"), None),
        (("owner",), "ada@example.com"),
        (("created_at",), "yesterday"),
        (("is_charging",), "perhaps"),
        (("actions",), {"code": "reauthenticate"}),
        (("actions", 0, "code"), None),
    ],
    ids=lambda v: ".".join(map(str, v)) if isinstance(v, tuple) else repr(v),
)
async def test_a_wrong_type_in_a_key_field_is_a_schema_violation(
    podero, make_provider, ada, clock, path, value
):
    user, wb = ada
    podero.sim.add_action(wb)
    body = podero.sim.wallbox(wb)
    target = body
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    podero.sim.fail("wallbox", status=200, body=orjson.dumps(body))

    fetched = await make_provider(config(podero.url)).fetch("wallboxes", [wallbox_watch(user, wb, clock)])
    result = fetched.checked()  # the schema check is deferred to the poller (run when a field moved)

    assert result.observations == []
    failure = result.failures[wb]
    assert isinstance(failure, errors.ProviderSchemaViolation)
    assert f"GET wallbox {wb}: response violates the schema at {'.'.join(map(str, path))}" in str(failure)


async def test_a_missing_required_field_is_a_schema_violation(podero, make_provider, ada, clock):
    user, wb = ada
    body = podero.sim.wallbox(wb)
    del body["owner"]
    podero.sim.fail("wallbox", status=200, body=orjson.dumps(body))

    fetched = await make_provider(config(podero.url)).fetch("wallboxes", [wallbox_watch(user, wb, clock)])
    result = fetched.checked()  # the schema check is deferred to the poller (run when a field moved)

    assert "at owner: Field required" in str(result.failures[wb])


async def test_a_body_over_the_size_cap_is_malformed(podero, make_provider, ada, clock):
    user, wb = ada

    result = await make_provider(config(podero.url, max_body_bytes=1024)).fetch(
        "wallboxes", [wallbox_watch(user, wb, clock)]
    )

    failure = result.failures[wb]
    assert isinstance(failure, errors.ProviderMalformed)
    assert "1024 byte cap" in str(failure)
    assert len(orjson.dumps(podero.sim.wallbox(wb))) > 1024


# ------------------------------------------------------------------------------------------- tokens


async def test_client_credentials_are_fetched_once_and_reused(podero, make_provider, ada, clock):
    user, wb = ada
    provider = make_provider(config(podero.url))

    for _ in range(3):
        await provider.fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert podero.sim.token_requests == 1
    assert [a[2] for a in podero.arrivals].count("/oauth2/token/") == 1


async def test_a_token_expiring_mid_run_is_renewed_exactly_once_without_a_changed_state(
    podero, make_provider, ada, clock
):
    user, wb = ada
    podero.sim.token_lifetime = 600
    boxes = [wb, *(podero.sim.add_wallbox(user) for _ in range(4))]
    watches = [wallbox_watch(user, b, clock) for b in boxes]
    provider = make_provider(config(podero.url, max_concurrency=5))

    first = await provider.fetch("wallboxes", watches)
    clock.advance(timedelta(seconds=600))  # the simulator's token is now expired
    second = await provider.fetch("wallboxes", watches)  # five concurrent reads need a new token

    assert podero.sim.token_requests == 2
    assert tokens_of(provider) == 2
    assert not second.failures
    assert len(podero.api_requests()) == 10  # no read was refused and retried
    digests = [{o.key.resource_id: meaningful_digest(o.state, source=SOURCE_WALLBOX) for o in r.observations}
               for r in (first, second)]  # fmt: skip
    assert digests[0] == digests[1]  # only volatile fields moved: nothing for a rule to see


async def test_a_token_revoked_early_is_refreshed_once_on_401(podero, make_provider, ada, clock):
    user, wb = ada
    provider = make_provider(config(podero.url))
    await provider.fetch("wallboxes", [wallbox_watch(user, wb, clock)])
    podero.sim.revoke_tokens()

    result = await provider.fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert not result.failures
    assert podero.sim.token_requests == 2


async def test_refused_client_credentials_fail_without_naming_the_secret(podero, make_provider, ada, clock):
    user, wb = ada

    result = await make_provider(config(podero.url, client_secret="wrong-" + SECRET)).fetch(
        "wallboxes", [wallbox_watch(user, wb, clock)]
    )

    failure = result.failures[wb]
    assert isinstance(failure, errors.ProviderAuthError)
    assert "token endpoint: HTTP 401" in str(failure)
    assert SECRET not in str(failure)


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ({"status": 503}, errors.ProviderUnavailable, "token endpoint: HTTP 503"),
        ({"status": 429}, errors.ProviderRateLimited, "token endpoint: HTTP 429"),
        ({"status": 302}, errors.ProviderError, "token endpoint: HTTP 302"),
        ({"kind": "garbage"}, errors.ProviderMalformed, "token response is not the expected JSON"),
        (
            {"status": 200, "body": b'{"token_type": "Bearer"}'},
            errors.ProviderMalformed,
            "not the expected JSON",
        ),
    ],
    ids=["503", "429", "302", "garbage", "no-access-token"],
)
async def test_a_failing_token_endpoint_fails_the_poll_and_the_next_poll_gets_a_token(
    podero, make_provider, ada, clock, fault, error, words
):
    user, wb = ada
    provider = make_provider(config(podero.url))
    podero.sim.fail("token", **fault)

    failed = await provider.fetch("wallboxes", [wallbox_watch(user, wb, clock)])
    recovered = await provider.fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert type(failed.failures[wb]) is error
    assert words in str(failed.failures[wb])
    assert list(states(recovered)) == [wb]
    assert tokens_of(provider) == 1


async def test_an_unreachable_token_endpoint_is_unavailable(
    podero, make_provider, ada, clock, unused_tcp_port
):
    user, wb = ada
    cfg = config(podero.url, token_url=f"http://127.0.0.1:{unused_tcp_port}/oauth2/token/")

    result = await make_provider(cfg).fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert isinstance(result.failures[wb], errors.ProviderUnavailable)
    assert "connection failed" in str(result.failures[wb])


async def test_the_password_grant_is_the_alternative_to_client_credentials(podero, make_provider, ada, clock):
    user, wb = ada
    cfg = config(podero.url, client_id=None, client_secret=None, username="sim-user", password="sim-password")

    result = await make_provider(cfg).fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert list(states(result)) == [wb]
    assert [a[2] for a in podero.arrivals if a[1] == "POST"] == [f"{API}/auth/token"]


async def test_a_refused_password_fails_without_naming_it(podero, make_provider, ada, clock):
    user, wb = ada
    cfg = config(
        podero.url, client_id=None, client_secret=None, username="sim-user", password="hunter2-wrong"
    )

    result = await make_provider(cfg).fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert isinstance(result.failures[wb], errors.ProviderAuthError)
    assert "hunter2" not in str(result.failures[wb])


async def test_no_credentials_at_all_is_refused_before_any_request():
    cfg = config("http://127.0.0.1:1", client_id=None, client_secret=None)

    with pytest.raises(
        errors.ProviderAuthError, match="client_id \\+ client_secret or username \\+ password"
    ):
        PoderoProvider.token_request(cfg)


async def test_token_url_overrides_the_token_endpoint(aiohttp_server, podero, make_provider, ada, clock):
    user, wb = ada
    gateway_hits: list[str] = []

    async def gateway(request: web.Request) -> web.Response:
        # A partner's token gateway in front of Podero's: forwards the documented request as is.
        gateway_hits.append(request.headers.get("Authorization", ""))
        async with (
            aiohttp.ClientSession() as s,
            s.post(podero.url + "/oauth2/token/", data=await request.read(), headers=request.headers) as r,
        ):
            return web.Response(status=r.status, body=await r.read(), content_type="application/json")

    app = web.Application()
    app.router.add_post("/tenants/acme/token", gateway)
    server = await aiohttp_server(app)
    cfg = config(podero.url, token_url=str(server.make_url("/tenants/acme/token")))

    result = await make_provider(cfg).fetch("wallboxes", [wallbox_watch(user, wb, clock)])

    assert list(states(result)) == [wb]
    assert len(gateway_hits) == 1
    assert gateway_hits[0].startswith("Basic ")
    assert podero.sim.token_requests == 1  # reached through the gateway only


# --------------------------------------------------------------------------------------- rate limit


async def test_requests_never_exceed_max_requests_per_second(podero, make_provider, ada, clock):
    user, wb = ada
    rate = 10
    boxes = [wb, *(podero.sim.add_wallbox(user) for _ in range(7))]
    provider = make_provider(config(podero.url, max_requests_per_second=rate, max_concurrency=8))
    await provider.fetch("wallboxes", [wallbox_watch(user, boxes[0], clock)])  # token fetched beforehand
    podero.arrivals.clear()

    start = time.monotonic()
    result = await provider.fetch("wallboxes", [wallbox_watch(user, b, clock) for b in boxes])

    assert len(result.observations) == 8
    arrivals = sorted(a[0] - start for a in podero.api_requests())
    assert len(arrivals) == 8
    # The limiter releases one request per 1/rate s; a request reaches the simulator no earlier than it
    # was released, so the k-th arrival is never before k/rate (a loaded machine only makes it later).
    # Hence never more than `rate` requests in the first second, 2*rate in the first two, and so on.
    early = [(k, round(t, 3)) for k, t in enumerate(arrivals) if t < k / rate - 0.002]
    assert early == []


# ---------------------------------------------------------------------------------------- discovery


async def test_discovery_lists_every_user_and_their_wallboxes_as_a_complete_listing(
    podero, make_provider, ada, clock
):
    user, wb = ada
    bob = podero.sim.add_user(email="bob@example.com")
    bob_boxes = [podero.sim.add_wallbox(bob), podero.sim.add_wallbox(bob)]
    podero.sim.soft_delete_wallbox(bob_boxes[1])
    podero.sim.add_user(email="carol@example.com")  # no wallbox

    result = await make_provider(config(podero.url, discover=True)).fetch(
        "wallboxes",
        [wallbox_watch(user, wb, clock)],  # also configured explicitly: read once, not twice
    )

    assert sorted(states(result)) == sorted([wb, *bob_boxes])
    assert states(result)[bob_boxes[1]]["deleted_at"] is not None  # listed with include_deleted=true
    assert result.complete_sources == frozenset({SOURCE_WALLBOX})
    paths = [a[2] for a in podero.api_requests()]
    assert paths.count(f"{API}/org/{ORG}/users") == 1
    assert sorted(p for p in paths if p.endswith("/wallboxes")) == sorted(
        f"{API}/org/{ORG}/users/{u}/wallboxes" for u in podero.sim.state()["users"]
    )
    assert not any(p.endswith(wb) for p in paths)
    assert all(
        a[3] == {"include_deleted": "true"} for a in podero.api_requests() if a[2].endswith("/wallboxes")
    )


async def test_a_failing_user_listing_fails_the_whole_discovery(podero, make_provider, ada, clock):
    podero.sim.add_user(email="bob@example.com")
    podero.sim.fail("user_wallboxes", status=502)

    with pytest.raises(errors.ProviderUnavailable):
        await make_provider(config(podero.url, discover=True)).fetch("wallboxes", [])


async def test_a_listed_wallbox_without_an_id_is_a_schema_violation(podero, make_provider, ada):
    _, wb = ada
    body = podero.sim.wallbox(wb)
    body["id"] = None
    podero.sim.fail("user_wallboxes", status=200, body=orjson.dumps([body]))

    with pytest.raises(errors.ProviderSchemaViolation, match="an item has no `id`"):
        await make_provider(config(podero.url, discover=True)).fetch("wallboxes", [])


@pytest.mark.parametrize("body", [b'{"users": []}', b'[{"email": "x@example.com"}]'])
async def test_a_user_listing_of_the_wrong_shape_is_a_schema_violation(podero, make_provider, body):
    podero.sim.fail("users", status=200, body=body)

    with pytest.raises(errors.ProviderSchemaViolation):
        await make_provider(config(podero.url, discover=True)).fetch("wallboxes", [])


# ------------------------------------------------------------------------------ onboarding sessions


async def test_onboarding_sessions_are_pending_then_finished_with_the_watch_ending(
    podero, make_provider, ada, clock
):
    user, _ = ada
    sid = podero.sim.add_onboarding_session(user)
    provider = make_provider(config(podero.url))

    pending = await provider.fetch("onboarding", [session_watch(sid, clock)])
    device = podero.sim.finish_onboarding(sid)
    finished = await provider.fetch("onboarding", [session_watch(sid, clock)])

    assert states(pending)[sid]["status"] == "pending"
    assert pending.terminal == {}
    assert states(finished)[sid]["status"] == "finished"
    assert states(finished)[sid]["object_id"] == device
    assert finished.terminal == {sid: "finished"}


async def test_an_onboarding_session_expires_after_the_end_of_its_expiration_date(
    podero, make_provider, ada, clock
):
    user, _ = ada
    clock.set(datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    sid = podero.sim.add_onboarding_session(user)  # valid until the end of 2026-11-24
    provider = make_provider(config(podero.url))

    clock.set(datetime(2026, 11, 24, 23, 59, 59, tzinfo=UTC))
    last_second = await provider.fetch("onboarding", [session_watch(sid, clock)])
    clock.advance(timedelta(seconds=1))
    expired = await provider.fetch("onboarding", [session_watch(sid, clock)])

    assert states(last_second)[sid]["status"] == "pending"
    assert states(expired)[sid]["status"] == "expired"
    assert expired.terminal == {sid: "expired"}


async def test_a_finished_session_stays_finished_after_its_expiration_date(podero, make_provider, ada, clock):
    user, _ = ada
    sid = podero.sim.add_onboarding_session(user)
    podero.sim.finish_onboarding(sid)
    clock.advance(timedelta(days=5))

    result = await make_provider(config(podero.url)).fetch("onboarding", [session_watch(sid, clock)])

    assert states(result)[sid]["status"] == "finished"


async def test_an_unknown_onboarding_session_is_gone_and_its_watch_ends(podero, make_provider, clock):
    missing = "00000000-0000-4000-8000-00000000beef"

    result = await make_provider(config(podero.url)).fetch("onboarding", [session_watch(missing, clock)])

    assert states(result) == {missing: None}
    assert result.terminal == {missing: "not_found"}


async def test_an_onboarding_session_of_the_wrong_shape_is_a_schema_violation(
    podero, make_provider, ada, clock
):
    user, _ = ada
    sid = podero.sim.add_onboarding_session(user)
    body = podero.sim.onboarding_session(sid)
    body["object_id"] = 7
    podero.sim.fail("onboarding", status=200, body=orjson.dumps(body))

    result = await make_provider(config(podero.url)).fetch("onboarding", [session_watch(sid, clock)])

    assert isinstance(result.failures[sid], errors.ProviderSchemaViolation)
    assert "at object_id" in str(result.failures[sid])


async def test_one_watch_group_per_device_family_and_onboarding_at_the_configured_interval():
    provider = PoderoProvider(
        "p",
        config("http://127.0.0.1:1", poll_interval="90s"),
        session=None,  # type: ignore[arg-type]
        clock=ManualClock(),
    )

    assert [(g.name, g.interval) for g in provider.watch_groups()] == [
        ("wallboxes", timedelta(seconds=90)),
        ("heat_pumps", timedelta(seconds=90)),
        ("electric_vehicles", timedelta(seconds=90)),
        ("inverters", timedelta(seconds=90)),
        ("onboarding", timedelta(seconds=90)),
    ]
    with pytest.raises(ValueError, match="unknown watch group"):
        await provider.fetch("heat-pumps")
