"""Every seed provider end to end: Realto and WattShift onboarding outcomes become signed webhooks."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from bridge.config.models import Config
from bridge.simulator.realto import RealtoSimulator
from bridge.simulator.wattshift import DEFAULT_API_KEY, WattShiftSimulator

RULES = """
[[rule]]
id = "realto-succeeded"
source = "realto.guided_onboarding_session"
field = "onboardingRequest.status"
to = "Succeeded"
type = "onboarding.completed"
channels = ["partner"]

[[rule]]
id = "realto-appeared"
source = "realto.guided_onboarding_session"
event = "appeared"
type = "onboarding.started"
channels = ["partner"]

[[rule]]
id = "wattshift-completed"
source = "wattshift.onboarding"
field = "status"
to = "COMPLETED"
type = "onboarding.completed"
channels = ["partner"]
"""


@pytest.fixture
async def realto(aiohttp_server, clock):
    sim = RealtoSimulator(clock=clock)
    server = await aiohttp_server(sim.app())
    sim.base_url = str(server.make_url("/api"))
    return sim


@pytest.fixture
async def wattshift(aiohttp_server, clock):
    sim = WattShiftSimulator(clock=clock)
    server = await aiohttp_server(sim.app())
    sim.base_url = str(server.make_url("")).rstrip("/")
    return sim


@pytest.fixture
async def bridge(tmp_path, make_bridge, realto, wattshift, sink, webhook_secret):
    (tmp_path / "rules.toml").write_text(textwrap.dedent(RULES))
    config = Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
            "rules": {"paths": [str(tmp_path / "rules.toml")]},
            "providers": {
                "realto": {
                    "kind": "realto",
                    "base_url": realto.base_url,
                    "client_id": "sim-client",
                    "client_secret": "sim-secret",
                    "page_size": 2,
                    "max_requests_per_second": 1000,
                },
                "wattshift": {
                    "kind": "wattshift",
                    "base_url": wattshift.base_url,
                    "api_key": DEFAULT_API_KEY,
                    "discover": True,
                    "max_requests_per_second": 1000,
                },
            },
            "channels": {"partner": {"kind": "webhook", "url": sink.url, "secret": webhook_secret}},
            "outbound": {"allow": ["127.0.0.0/8"]},
        }
    ).model_copy(update={"base_dir": str(tmp_path)})
    return await make_bridge(config)


async def test_realto_sessions_are_paged_baselined_and_notified_once(bridge, realto, sink):
    ids = [realto.add_session() for _ in range(5)]  # three pages of two
    summary = await bridge.poll("sessions", provider="realto")
    assert summary.ok
    assert summary.observed == 5
    assert summary.events == 0
    realto.succeed(ids[4])
    new = realto.add_session()
    bridge.clock.advance(timedelta(minutes=5))
    summary = await bridge.poll("sessions", provider="realto")
    assert summary.events == 2
    await sink.wait_for(2)
    await bridge.deliver()
    got = {(h.json["type"], h.json["data"]["resource_id"]) for h in sink.received}
    assert got == {("onboarding.completed", ids[4]), ("onboarding.started", new)}


async def test_a_failure_on_the_last_realto_page_changes_nothing(bridge, realto, sink):
    ids = [realto.add_session() for _ in range(5)]
    await bridge.poll("sessions", provider="realto")
    realto.succeed(ids[0])
    realto.fail("list", status=503, on_page=3)
    summary = await bridge.poll("sessions", provider="realto")
    assert not summary.ok
    assert summary.events == 0
    assert await bridge.deliver() == 0
    assert sink.received == []
    summary = await bridge.poll("sessions", provider="realto")  # recovered: the change is notified once
    assert summary.events == 1


async def test_a_wattshift_home_completing_onboarding_is_notified(bridge, wattshift, sink):
    home = wattshift.add_home()
    await bridge.poll("homes", provider="wattshift")
    wattshift.start(home)
    wattshift.advance(home)
    assert (await bridge.poll("homes", provider="wattshift")).events == 0
    wattshift.complete(home)
    assert (await bridge.poll("homes", provider="wattshift")).events == 1
    await sink.wait_for(1)
    assert sink.received[0].json["data"]["state"]["status"] == "COMPLETED"
