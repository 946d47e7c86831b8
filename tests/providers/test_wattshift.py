"""WattShift client against the WattShift simulator: per-home status, discovery, drift, limits."""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from bridge import errors
from bridge.clock import ManualClock
from bridge.config.models import WattShiftConfig
from bridge.model import ResourceKey, Watch
from bridge.providers.wattshift import SOURCE_ONBOARDING, WattShiftProvider, normalise_brand
from bridge.simulator.wattshift import DEFAULT_API_KEY, OMIT, STATUS_KEYS, WattShiftSimulator

STATUS_PATH = "/v1/onboarding/status/get"


@dataclass
class WattShift:
    """The simulator, served, plus the monotonic arrival time of every status request."""

    sim: WattShiftSimulator
    url: str
    status_arrivals: list[float] = field(default_factory=list)


@pytest.fixture
async def ws(aiohttp_server, clock: ManualClock) -> WattShift:
    sim = WattShiftSimulator(clock=clock)
    app = sim.app()
    served = WattShift(sim=sim, url="")

    @web.middleware
    async def timestamps(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == STATUS_PATH:
            served.status_arrivals.append(time.monotonic())  # real time: the limiter runs on the loop
        return await handler(request)

    app.middlewares.append(timestamps)
    server = await aiohttp_server(app)
    served.url = str(server.make_url("")).rstrip("/")
    sim.base_url = served.url
    return served


def config(url: str, **overrides: Any) -> WattShiftConfig:
    data: dict[str, Any] = {
        "kind": "wattshift",
        "base_url": url,
        "api_key": DEFAULT_API_KEY,
        "max_requests_per_second": 1000,
    }
    return WattShiftConfig.model_validate({**data, **overrides})


@pytest.fixture
async def make_provider(clock: ManualClock) -> AsyncIterator[Callable[[WattShiftConfig], WattShiftProvider]]:
    sessions: list[aiohttp.ClientSession] = []

    def make(cfg: WattShiftConfig) -> WattShiftProvider:
        session = aiohttp.ClientSession()
        sessions.append(session)
        return WattShiftProvider("wattshift", cfg, session=session, clock=clock)

    yield make
    for session in sessions:
        await session.close()


def watch(home_id: str, clock: ManualClock) -> Watch:
    key = ResourceKey(source=SOURCE_ONBOARDING, provider="wattshift", resource_id=home_id)
    return Watch(key=key, created_at=clock.now())


def states(result: Any) -> dict[str, Any]:
    return {o.key.resource_id: o.state for o in result.observations}


async def test_each_configured_home_is_observed_with_its_status_as_sent(ws, make_provider):
    fresh = ws.sim.add_home()
    busy = ws.sim.add_home()
    ws.sim.start(busy, "ecobee")
    ws.sim.advance(busy, 2)

    result = await make_provider(config(ws.url, home_ids=[fresh, busy])).fetch("homes")

    assert states(result) == {fresh: ws.sim.status(fresh), busy: ws.sim.status(busy)}
    assert states(result)[busy]["step"] == 3
    assert {o.key.source for o in result.observations} == {SOURCE_ONBOARDING}
    assert not result.failures
    assert result.complete_sources == frozenset()  # configured ids are no listing


async def test_the_legacy_brand_name_is_stored_as_thermostat_brand_code(ws, make_provider):
    home = ws.sim.add_home(legacy_brand_field=True)
    ws.sim.start(home, "honeywell")
    assert ws.sim.status(home)["thermostatBrandName"] == "honeywell"

    result = await make_provider(config(ws.url, home_ids=[home])).fetch("homes")

    [state] = states(result).values()
    assert state["thermostatBrandCode"] == "honeywell"
    assert "thermostatBrandName" not in state
    assert list(state) == list(STATUS_KEYS)  # same place as the current spelling


def test_a_body_with_both_brand_spellings_keeps_the_non_null_code():
    both = {"homeId": "h", "thermostatBrandName": "nest", "thermostatBrandCode": None, "status": "X"}
    current = {"homeId": "h", "thermostatBrandCode": "ecobee", "thermostatBrandName": "nest"}

    assert normalise_brand(both) == {"homeId": "h", "thermostatBrandCode": "nest", "status": "X"}
    assert normalise_brand(current) == {"homeId": "h", "thermostatBrandCode": "ecobee"}


async def test_an_unknown_home_is_observed_as_gone_not_as_a_failure(ws, make_provider):
    known = ws.sim.add_home()

    result = await make_provider(config(ws.url, home_ids=[known, "ws_home_unknown"])).fetch("homes")

    assert states(result) == {known: ws.sim.status(known), "ws_home_unknown": None}
    assert not result.failures


async def test_discovery_polls_every_listed_home_once_as_a_complete_listing(ws, make_provider):
    homes = [ws.sim.add_home() for _ in range(3)]

    result = await make_provider(config(ws.url, discover=True, home_ids=[homes[0]])).fetch("homes")

    assert sorted(states(result)) == sorted(homes)
    assert ws.sim.requests.count(("POST", STATUS_PATH)) == 3
    assert result.complete_sources == frozenset({SOURCE_ONBOARDING})


async def test_a_failing_home_list_fails_the_poll(ws, make_provider):
    ws.sim.add_home()
    ws.sim.fail("homes", status=502)

    with pytest.raises(errors.ProviderUnavailable, match=r"wattshift POST /v1/homes/list: HTTP 502"):
        await make_provider(config(ws.url, discover=True)).fetch("homes")

    assert ("POST", STATUS_PATH) not in ws.sim.requests


async def test_one_failing_home_leaves_the_discovered_listing_complete(ws, make_provider):
    # The listing itself was read whole; the poller keeps the failed home (it is listed, only its
    # status is missing), so one bad home no longer hides every other home's disappearance (#18).
    homes = [ws.sim.add_home() for _ in range(3)]
    ws.sim.fail("status", status=500)

    result = await make_provider(config(ws.url, discover=True)).fetch("homes")

    assert len(result.failures) == 1
    [failure] = result.failures.values()
    assert isinstance(failure, errors.ProviderUnavailable)
    assert "wattshift POST /v1/onboarding/status/get: HTTP 500" in str(failure)
    assert len(result.observations) == 2
    assert set(result.failures) | set(states(result)) == set(homes)
    assert result.complete_sources == frozenset({SOURCE_ONBOARDING})


async def test_a_home_backing_off_is_not_asked_and_is_reported_skipped(ws, make_provider):
    bad, good = ws.sim.add_home(), ws.sim.add_home()

    result = await make_provider(config(ws.url, home_ids=[bad, good])).fetch("homes", skip={bad})

    assert list(states(result)) == [good]
    assert result.skipped == frozenset({bad})
    assert not result.failures
    asked = [r for r in ws.sim.requests if r == ("POST", STATUS_PATH)]
    assert len(asked) == 1


async def test_schema_drift_is_tolerated_and_stored_as_sent(ws, make_provider):
    missing = ws.sim.add_home()
    ws.sim.set_status(missing, step=OMIT, eligibilityStatus=OMIT)
    added = ws.sim.add_home()
    body = {**ws.sim.status(added), "deviceCount": 2}
    ws.sim.fail("status", status=201, body=orjson.dumps(body))
    provider = make_provider(config(ws.url, home_ids=[added]))

    drifted = await provider.fetch("homes")
    provider.cfg = config(ws.url, home_ids=[missing])
    trimmed = await provider.fetch("homes")

    assert states(drifted) == {added: body}
    assert states(trimmed) == {missing: ws.sim.status(missing)}
    assert "step" not in states(trimmed)[missing]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        pytest.param("homeId", 123, id="home-id-number"),
        pytest.param("status", None, id="status-null"),
        pytest.param("step", "two", id="step-string"),
    ],
)
async def test_a_wrong_type_in_a_key_field_fails_that_home_only(ws, make_provider, key, value):
    bad = ws.sim.add_home()
    good = ws.sim.add_home()
    ws.sim.set_status(bad, **{key: value})

    result = await make_provider(config(ws.url, home_ids=[bad, good])).fetch("homes")

    assert isinstance(result.failures[bad], errors.ProviderSchemaViolation)
    assert f"at {key}" in str(result.failures[bad])
    assert list(states(result)) == [good]


async def test_a_status_for_another_home_is_a_schema_violation(ws, make_provider):
    asked = ws.sim.add_home()
    other = ws.sim.add_home()
    ws.sim.fail("status", status=201, body=orjson.dumps(ws.sim.status(other)))

    result = await make_provider(config(ws.url, home_ids=[asked])).fetch("homes")

    assert isinstance(result.failures[asked], errors.ProviderSchemaViolation)
    assert result.observations == []


def retry_after_header(kind: str, seconds: int, clock: ManualClock) -> str:
    """`Retry-After` as delta-seconds, or as an HTTP date that far ahead of the injected clock."""
    if kind == "seconds":
        return str(seconds)
    return email.utils.format_datetime(clock.now() + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("kind", "seconds"),
    [pytest.param("seconds", 45, id="seconds"), pytest.param("http-date", 120, id="http-date")],
)
async def test_429_fails_the_home_and_carries_retry_after(ws, make_provider, clock, kind, seconds):
    home = ws.sim.add_home()
    ws.sim.fail("status", status=429, headers={"Retry-After": retry_after_header(kind, seconds, clock)})

    result = await make_provider(config(ws.url, home_ids=[home])).fetch("homes")

    failure = result.failures[home]
    assert isinstance(failure, errors.ProviderRateLimited)
    assert failure.retry_after is not None
    assert failure.retry_after == seconds
    assert result.observations == []


async def test_a_refused_api_key_fails_without_naming_the_key(ws, make_provider):
    home = ws.sim.add_home()
    wrong = "sk-" + "0" * 64

    result = await make_provider(config(ws.url, home_ids=[home], api_key=wrong)).fetch("homes")

    failure = result.failures[home]
    assert isinstance(failure, errors.ProviderAuthError)
    assert "HTTP 401" in str(failure)
    assert wrong not in str(failure)
    assert DEFAULT_API_KEY not in str(failure)


async def test_a_home_watched_at_run_time_is_polled_and_its_watch_ends_when_completed(
    ws, make_provider, clock
):
    configured = ws.sim.add_home()
    watched = ws.sim.add_home()
    ws.sim.start(configured)
    ws.sim.complete(configured)
    provider = make_provider(config(ws.url, home_ids=[configured]))
    watches = [watch(watched, clock), watch(configured, clock)]

    first = await provider.fetch("homes", watches)
    ws.sim.start(watched)
    ws.sim.complete(watched)
    ws.sim.remove_home(configured)
    second = await provider.fetch("homes", watches)

    assert sorted(states(first)) == sorted([configured, watched])
    assert first.terminal == {}  # configured homes are never a watch that ends
    assert states(second)[configured] is None
    assert second.terminal == {watched: "completed"}


async def test_status_requests_are_paced_by_the_configured_rate(ws, clock):
    homes = [ws.sim.add_home() for _ in range(12)]
    cfg = config(ws.url, home_ids=homes, max_requests_per_second=5, max_concurrency=12)
    # When each request leaves the client, on the loop's clock: the instant the limiter governs.
    # (Arrival times at the in-process simulator would add the loaded test machine's scheduling
    # jitter, bunching evenly spaced requests together.)
    sent: list[float] = []

    async def on_request_start(session, ctx, params):
        sent.append(asyncio.get_running_loop().time())

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        result = await WattShiftProvider("wattshift", cfg, session=session, clock=clock).fetch("homes")

    assert len(result.observations) == 12
    assert len(ws.status_arrivals) == 12  # the simulator saw every request, and no extra one
    # A bucket of one refilled every 1/rate s: consecutive requests at least 0.2 s apart, so never
    # more than 5 in any 1 s window.
    gaps = [b - a for a, b in itertools.pairwise(sent)]
    assert min(gaps) >= 0.2 - 0.01
    busiest = max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent)
    assert busiest <= 5


def test_one_homes_group_at_the_configured_interval():
    cfg = config("http://127.0.0.1:1", poll_interval="3m")
    provider = WattShiftProvider("ws", cfg, session=None, clock=ManualClock())  # type: ignore[arg-type]

    [group] = provider.watch_groups()

    assert (group.provider, group.name, group.interval) == ("ws", "homes", timedelta(minutes=3))
    assert provider.static_watches() == []
