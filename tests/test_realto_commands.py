"""Realto commands end to end on the simulator: watched by id (registered by API) until terminal, listed
per entity over a sliding window, failed polls quiet; and guided onboarding sessions watched by id."""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest

from bridge.config.models import Config
from bridge.model import ResourceKey
from bridge.simulator.realto import RealtoSimulator

ENTITY = "4b1f6c2e-9d7a-4e3b-8f10-2c5d6e7f8a9b"
RULES = """
[[rule]]
id = "command-failed"
source = "realto.command"
field = "status"
to = "Failed"
type = "command.failed"
channels = ["partner"]

[rule.email]
subject = "{{ new.type }} failed: {{ new.error.title }}"
body = "{{ new.error.description }}"

[[rule]]
id = "command-succeeded"
source = "realto.command"
field = "status"
to = "Succeeded"
type = "command.succeeded"
channels = ["partner"]

[[rule]]
id = "command-seen-failed"
source = "realto.command"
event = "appeared"
if = "new.status == 'Failed'"
type = "command.failed"
channels = ["partner"]

[[rule]]
id = "guided-succeeded"
source = "realto.guided_onboarding_session"
field = "onboardingRequest.status"
to = "Succeeded"
type = "onboarding.completed"
channels = ["partner"]
"""


@pytest.fixture
async def realto(aiohttp_server, clock) -> RealtoSimulator:
    sim = RealtoSimulator(clock=clock)
    server = await aiohttp_server(sim.app())
    sim.base_url = str(server.make_url("/api"))
    return sim


def make(tmp_path, realto, sink, webhook_secret, **realto_extra) -> Config:
    (tmp_path / "rules.toml").write_text(textwrap.dedent(RULES))
    return Config.model_validate(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
            "server": {"admin_token": "t0ken-for-tests"},
            "rules": {"paths": [str(tmp_path / "rules.toml")]},
            "providers": {
                "realto": {
                    "kind": "realto",
                    "base_url": realto.base_url,
                    "client_id": "sim-client",
                    "client_secret": "sim-secret",
                    "page_size": 2,
                    "max_requests_per_second": 1000,
                    "list_guided_sessions": False,
                    **realto_extra,
                }
            },
            "channels": {"partner": {"kind": "webhook", "url": sink.url, "secret": webhook_secret}},
            "outbound": {"allow": ["127.0.0.0/8"]},  # the sink is on loopback, refused unless allowed
        }
    ).model_copy(update={"base_dir": str(tmp_path)})


def command_key(cid: str) -> ResourceKey:
    return ResourceKey(source="realto.command", provider="realto", resource_id=cid)


async def test_a_command_registered_by_api_is_watched_until_it_fails_with_its_error(
    tmp_path, make_bridge, realto, sink, webhook_secret
):
    bridge = await make_bridge(make(tmp_path, realto, sink, webhook_secret))
    cid = realto.add_command(ENTITY, type="StartCharging")
    resp = await bridge.client.post(
        "/api/watches",
        json={"source": "realto.command", "provider": "realto", "entity_id": ENTITY, "command_id": cid},
        headers={"Authorization": "Bearer t0ken-for-tests"},
    )
    assert resp.status == 201, await resp.text()

    assert (await bridge.poll("commands", provider="realto")).events == 0  # baseline: Pending
    realto.advance_command(cid)  # Triggered
    assert (await bridge.poll("commands", provider="realto")).events == 0  # no rule on Triggered
    assert (await bridge.poll("commands", provider="realto")).events == 0  # unchanged: quiet
    realto.fail("command", status=503)
    realto.advance_command(cid)  # Sent
    realto.fail_command(cid, "OemRejected", "The vehicle refused the command: not plugged in.")
    failed = await bridge.poll("commands", provider="realto")
    assert (failed.ok, failed.events) == (False, 0)  # the failed poll is quiet

    assert (await bridge.poll("commands", provider="realto")).events == 1
    await bridge.deliver()
    await sink.wait_for(1)
    data = sink.received[0].json["data"]
    assert sink.received[0].json["type"] == "command.failed"
    assert data["state"]["error"] == {
        "title": "OemRejected",
        "description": "The vehicle refused the command: not plugged in.",
    }
    [ended] = await bridge.store.list_watches(source="realto.command", active_only=False)
    assert (ended.ended_at is not None, ended.end_reason) == (True, "failed")
    polled = len(realto.requests)
    await bridge.poll("commands", provider="realto")
    assert len(realto.requests) == polled  # an ended watch is not read again


async def test_a_configured_command_watch_ends_when_it_succeeds(
    tmp_path, make_bridge, realto, sink, webhook_secret
):
    cid = realto.add_command(ENTITY, type="StopCharging")
    config = make(tmp_path, realto, sink, webhook_secret, commands=[{"entity_id": ENTITY, "command_id": cid}])
    bridge = await make_bridge(config)
    await bridge.poll("commands", provider="realto")
    for _ in range(3):
        realto.advance_command(cid)  # Triggered, Sent, Succeeded
    assert (await bridge.poll("commands", provider="realto")).events == 1
    await bridge.deliver()
    await sink.wait_for(1)
    assert sink.received[0].json["type"] == "command.succeeded"
    assert await bridge.store.list_watches(source="realto.command") == []


async def test_the_entity_window_lists_new_commands_and_forgets_none_that_slide_out(
    tmp_path, make_bridge, realto, sink, webhook_secret, clock
):
    old = realto.add_command(ENTITY, trigger_time=clock.now() - timedelta(hours=1))
    config = make(tmp_path, realto, sink, webhook_secret, command_entities=[ENTITY], command_window="2h")
    bridge = await make_bridge(config)
    assert (await bridge.poll("command_windows", provider="realto")).events == 0  # baseline
    clock.advance(timedelta(minutes=5))
    fresh = realto.add_command(ENTITY, type="LimitFeedIn", value="3000")
    realto.advance_command(fresh)
    realto.fail_command(fresh, "Timeout", "No answer from the inverter.")
    assert (await bridge.poll("command_windows", provider="realto")).events == 1  # appeared as Failed
    for _ in range(3):
        realto.advance_command(old)
    assert (await bridge.poll("command_windows", provider="realto")).events == 1  # Succeeded
    await bridge.deliver()  # the sends of those polls finish before the clock jumps 3 hours
    clock.advance(timedelta(hours=3))  # both slide out of the window
    assert (await bridge.poll("command_windows", provider="realto")).events == 0  # not "disappeared"
    snap = await bridge.store.get_snapshot(command_key(old))
    assert snap is not None
    assert snap.state is not None
    await bridge.deliver()
    await sink.wait_for(2)
    assert sorted(h.json["data"]["rule"] for h in sink.received) == [
        "command-seen-failed",
        "command-succeeded",
    ]


async def test_a_guided_session_watched_by_id_ends_when_its_request_succeeds(
    tmp_path, make_bridge, realto, sink, webhook_secret
):
    sid = realto.add_session()
    bridge = await make_bridge(make(tmp_path, realto, sink, webhook_secret, guided_sessions=[sid]))
    assert (await bridge.poll("guided_sessions", provider="realto")).events == 0
    realto.succeed(sid)
    assert (await bridge.poll("guided_sessions", provider="realto")).events == 1
    [ended] = await bridge.store.list_watches(source="realto.guided_onboarding_session", active_only=False)
    assert ended.end_reason == "succeeded"


async def test_a_command_that_is_gone_ends_its_watch(tmp_path, make_bridge, realto, sink, webhook_secret):
    missing = "7e2d1c0b-3a4f-4b5c-9d8e-1f2a3b4c5d6e"
    config = make(
        tmp_path, realto, sink, webhook_secret, commands=[{"entity_id": ENTITY, "command_id": missing}]
    )
    bridge = await make_bridge(config)
    await bridge.poll("commands", provider="realto")
    [ended] = await bridge.store.list_watches(source="realto.command", active_only=False)
    assert ended.end_reason == "not_found"
