"""Podero heat pumps, electric vehicles and inverters against the simulator: by id, discovered per user,
older field names, volatile readings, 404s, schema violations, and the device a finished onboarding
session creates; plus the token URL both flows may use."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bridge import errors
from bridge.clock import ManualClock
from bridge.config.models import PoderoConfig
from bridge.model import ResourceKey, Watch
from bridge.poll.diff import diff, meaningful_digest
from bridge.providers.podero import (
    SOURCE_ELECTRIC_VEHICLE,
    SOURCE_HEAT_PUMP,
    SOURCE_INVERTER,
    SOURCE_ONBOARDING,
    PoderoProvider,
)
from bridge.simulator.podero import API, PoderoSimulator

ORG = "00000000-0000-4000-8000-000000000001"
FAMILIES = [
    pytest.param("heat_pumps", SOURCE_HEAT_PUMP, id="heat-pump"),
    pytest.param("electric_vehicles", SOURCE_ELECTRIC_VEHICLE, id="electric-vehicle"),
    pytest.param("inverters", SOURCE_INVERTER, id="inverter"),
]


@pytest.fixture
async def sim(aiohttp_server, clock: ManualClock) -> PoderoSimulator:
    simulator = PoderoSimulator(clock=clock, org_id=ORG)
    server = await aiohttp_server(simulator.app())
    simulator.base_url = str(server.make_url("")).rstrip("/")
    return simulator


def config(url: str, **overrides: Any) -> PoderoConfig:
    data: dict[str, Any] = {
        "kind": "podero",
        "base_url": url,
        "client_id": "sim-client",
        "client_secret": "sim-secret",
        "org_id": ORG,
        "max_requests_per_second": 1000,
    }
    return PoderoConfig.model_validate({**data, **overrides})


@pytest.fixture
async def make_provider(clock: ManualClock) -> AsyncIterator[Callable[..., PoderoProvider]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(cfg: PoderoConfig) -> PoderoProvider:
        session = aiohttp.ClientSession(middlewares=(PoderoProvider.middleware("podero", cfg, clock),))
        sessions.append(session)
        return PoderoProvider("podero", cfg, session=session, clock=clock)

    yield make
    for session in sessions:
        await session.close()


def watch(source: str, user: str, device: str, clock: ManualClock) -> Watch:
    key = ResourceKey(source=source, provider="podero", resource_id=device)
    return Watch(key=key, params={"user_id": user}, created_at=clock.now())


@pytest.mark.parametrize(("group", "source"), FAMILIES)
async def test_a_watched_device_is_read_by_id_with_include_deleted(sim, make_provider, clock, group, source):
    user = sim.add_user(email="ada@example.com")
    device = sim.add_device(group, user)
    provider = make_provider(config(sim.base_url))

    result = (await provider.fetch(group, [watch(source, user, device, clock)])).checked()

    [obs] = result.observations
    assert obs.key == ResourceKey(source=source, provider="podero", resource_id=device)
    assert obs.state is not None
    assert obs.state["id"] == device
    assert obs.state["owner"]["email"] == "ada@example.com"
    path = f"{API}/org/{ORG}/users/{user}/{group.replace('_', '-')}/{device}"
    assert ("GET", path) in sim.requests


@pytest.mark.parametrize(("group", "source"), FAMILIES)
async def test_reads_that_differ_only_in_live_readings_and_stamps_digest_alike(
    sim, make_provider, clock, group, source
):
    user = sim.add_user(email="ada@example.com")
    device = sim.add_device(group, user)
    provider = make_provider(config(sim.base_url))
    w = [watch(source, user, device, clock)]

    first = (await provider.fetch(group, w)).observations[0].state
    clock.advance(60)
    second = (await provider.fetch(group, w)).observations[0].state

    assert first != second  # the simulator moved stamps and live readings
    assert meaningful_digest(first, source=source) == meaningful_digest(second, source=source)
    assert diff(first, second, source=source) == []


async def test_a_rule_on_a_live_reading_keeps_it(sim, make_provider, clock):
    user = sim.add_user(email="ada@example.com")
    ev = sim.add_electric_vehicle(user, battery_level=40)
    provider = make_provider(config(sim.base_url))
    w = [watch(SOURCE_ELECTRIC_VEHICLE, user, ev, clock)]
    first = (await provider.fetch("electric_vehicles", w)).observations[0].state
    sim.update_device(ev, battery_level=12)
    second = (await provider.fetch("electric_vehicles", w)).observations[0].state

    keep = frozenset({"battery_level"})
    assert diff(first, second, source=SOURCE_ELECTRIC_VEHICLE) == []
    [change] = diff(first, second, source=SOURCE_ELECTRIC_VEHICLE, keep=keep)
    assert (change.field, change.old, change.new) == ("battery_level", 40, 12)


@pytest.mark.parametrize(
    ("group", "legacy", "current", "value"),
    [
        pytest.param("heat_pumps", "dhw_actual_temperature", "dhw_temperature", 49.0, id="heat-pump-dhw"),
        pytest.param("electric_vehicles", "charge_limit_min", "charge_target_min", 50, id="ev-charge-limit"),
        pytest.param("inverters", "battery_connected", "is_battery_connected", True, id="inverter-battery"),
    ],
)
async def test_older_field_names_are_stored_under_the_current_ones(
    sim, make_provider, clock, group, legacy, current, value
):
    user = sim.add_user(email="ada@example.com")
    device = sim.add_device(group, user, legacy=True)
    source = {"heat_pumps": SOURCE_HEAT_PUMP, "electric_vehicles": SOURCE_ELECTRIC_VEHICLE}.get(
        group, SOURCE_INVERTER
    )
    assert legacy in sim.device(device)  # the simulator really sends the older name
    provider = make_provider(config(sim.base_url))

    [obs] = (await provider.fetch(group, [watch(source, user, device, clock)])).checked().observations

    assert obs.state is not None
    assert obs.state[current] == value
    assert legacy not in obs.state
    assert obs.state["is_pause_power_active"] is False  # `pause_power_active` in the older rendering


async def test_discovery_lists_every_family_of_every_user(sim, make_provider):
    ada = sim.add_user(email="ada@example.com")
    bob = sim.add_user(email="bob@example.com")
    hp = sim.add_heat_pump(ada)
    ev = sim.add_electric_vehicle(bob)
    iv = sim.add_inverter(bob)
    provider = make_provider(config(sim.base_url, discover=True))

    found = {}
    for group in ("heat_pumps", "electric_vehicles", "inverters"):
        result = await provider.fetch(group, [])
        assert len(result.complete_sources) == 1
        found[group] = sorted(o.key.resource_id for o in result.observations)

    assert found == {"heat_pumps": [hp], "electric_vehicles": [ev], "inverters": [iv]}


async def test_a_failed_user_listing_fails_the_discovery(sim, make_provider):
    user = sim.add_user(email="ada@example.com")
    sim.add_heat_pump(user)
    sim.fail("user_heat_pumps", status=503)
    provider = make_provider(config(sim.base_url, discover=True))

    with pytest.raises(errors.ProviderError):
        await provider.fetch("heat_pumps", [])


async def test_a_deleted_device_is_a_change_and_an_unknown_one_reads_as_gone(sim, make_provider, clock):
    user = sim.add_user(email="ada@example.com")
    hp = sim.add_heat_pump(user)
    provider = make_provider(config(sim.base_url))
    sim.soft_delete_device(hp)
    missing = "00000000-0000-4000-8000-00000000dead"

    result = await provider.fetch(
        "heat_pumps",
        [watch(SOURCE_HEAT_PUMP, user, hp, clock), watch(SOURCE_HEAT_PUMP, user, missing, clock)],
    )

    states = {o.key.resource_id: o.state for o in result.checked().observations}
    assert states[hp] is not None
    assert states[hp]["deleted_at"] is not None
    assert states[missing] is None


async def test_an_unknown_boost_state_is_a_schema_violation(sim, make_provider, clock):
    user = sim.add_user(email="ada@example.com")
    ev = sim.add_electric_vehicle(user)
    body = sim.device(ev)
    body["boost_state"] = "boosting"
    sim.fail("electric_vehicle", status=200, body=orjson.dumps(body))
    provider = make_provider(config(sim.base_url))

    result = (
        await provider.fetch("electric_vehicles", [watch(SOURCE_ELECTRIC_VEHICLE, user, ev, clock)])
    ).checked()

    assert result.observations == []
    assert "boost_state" in str(result.failures[ev])
    assert isinstance(result.failures[ev], errors.ProviderSchemaViolation)


async def test_the_ev_boost_endpoint_follows_the_documented_machine(sim):
    user = sim.add_user(email="ada@example.com")
    ev = sim.add_electric_vehicle(user, is_plugged_in=True, boost_state="available")
    url = f"{sim.base_url}{API}/org/{ORG}/users/{user}/electric-vehicles/{ev}/boost"
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{sim.base_url}/oauth2/token/", json={
            "grant_type": "client_credentials", "client_id": "sim-client", "client_secret": "sim-secret",
        }) as resp:  # fmt: skip
            token = (await resp.json())["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(url, headers=auth) as resp:
            assert resp.status == 204
        assert sim.device(ev)["boost_state"] == "requested"
        sim.update_device(ev, is_charging=True, boost_state="ongoing")
        async with http.post(url, headers=auth) as resp:
            assert resp.status == 409
            assert await resp.json() == {"state": "ongoing", "reason": "already_charging"}


@pytest.mark.parametrize(
    ("skip_to", "source"),
    [
        pytest.param("hp", SOURCE_HEAT_PUMP, id="heat-pump"),
        pytest.param("ev", SOURCE_ELECTRIC_VEHICLE, id="electric-vehicle"),
        pytest.param("iv", SOURCE_INVERTER, id="inverter"),
        pytest.param("wb", "podero.wallbox", id="wallbox"),
    ],
)
async def test_a_finished_session_names_its_device_and_starts_a_watch_on_it(
    sim, make_provider, clock, skip_to, source
):
    user = sim.add_user(email="ada@example.com")
    sid = sim.add_onboarding_session(user, skip_to=skip_to)
    device = sim.finish_onboarding(sid)
    key = ResourceKey(source=SOURCE_ONBOARDING, provider="podero", resource_id=sid)
    provider = make_provider(config(sim.base_url))

    result = await provider.fetch("onboarding", [Watch(key=key, created_at=clock.now())])

    [obs] = result.observations
    assert obs.state is not None
    assert obs.state["device"] == {"id": device, "source": source}
    started = result.start_watches[sid]
    assert started.key == ResourceKey(source=source, provider="podero", resource_id=device)
    assert started.params == {"user_id": user}
    assert result.terminal[sid] == "finished"


async def test_a_session_without_skip_to_names_its_device_but_starts_no_watch(sim, make_provider, clock):
    user = sim.add_user(email="ada@example.com")
    sid = sim.add_onboarding_session(user, skip_to=None)
    device = sim.finish_onboarding(sid)
    key = ResourceKey(source=SOURCE_ONBOARDING, provider="podero", resource_id=sid)
    provider = make_provider(config(sim.base_url))

    result = await provider.fetch("onboarding", [Watch(key=key, created_at=clock.now())])

    assert result.observations[0].state["device"] == {"id": device, "source": None}  # type: ignore[index]
    assert result.start_watches == {}


# ------------------------------------------------------------------------------------ token URL


@pytest.fixture
async def token_paths(aiohttp_server, clock) -> tuple[PoderoSimulator, list[str]]:
    simulator = PoderoSimulator(clock=clock, org_id=ORG)
    app = simulator.app()
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        seen.append(request.path)
        return await handler(request)

    app.middlewares.insert(0, record)
    server = await aiohttp_server(app)
    simulator.base_url = str(server.make_url("")).rstrip("/")
    return simulator, seen


@pytest.mark.parametrize(
    ("token_url", "expected"),
    [
        pytest.param(None, "/oauth2/token/", id="default-oauth2-token"),
        pytest.param("{base}/api/partners/v2.0/auth/token", f"{API}/auth/token", id="seed-openapi-path"),
    ],
)
async def test_client_credentials_work_on_both_token_urls(
    token_paths, make_provider, clock, token_url, expected
):
    sim, seen = token_paths
    user = sim.add_user(email="ada@example.com")
    hp = sim.add_heat_pump(user)
    overrides = {"token_url": token_url.format(base=sim.base_url)} if token_url else {}
    provider = make_provider(config(sim.base_url, **overrides))

    result = (await provider.fetch("heat_pumps", [watch(SOURCE_HEAT_PUMP, user, hp, clock)])).checked()

    assert [o.key.resource_id for o in result.observations] == [hp]
    assert [p for p in seen if "token" in p] == [expected]
