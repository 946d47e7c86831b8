"""One bad resource never blinds a provider (#18), on the injected clock with a real WattShift simulator.

The hostile run from the issue, and its relatives: one home of two answers 500, 429 or 503 with an
absurd Retry-After, hangs past the timeout, or sends an oversized, endless or garbage body, every
time it is asked. The healthy home is read at every poll; the bad one backs off on its own; nothing
fires that should not (no change, no disappearance, no `provider-down`); the one `bridge.provider`
event is the capped Retry-After, once; and when the bad home answers again it is read and recovers
by itself.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.app_keys import HEALTH, POLLER, PROVIDERS
from bridge.config.models import Config
from bridge.model import HEALTH_SOURCE, ResourceKey
from bridge.providers.wattshift import SOURCE_ONBOARDING
from bridge.simulator.wattshift import DEFAULT_API_KEY, WattShiftSimulator

INTERVAL = timedelta(seconds=2)
CAP = timedelta(minutes=5)  # the default retry_after_cap: max(5 min, 3 * 2 s)
POLLS = 30  # one minute of polls every 2 s
ADMIN_TOKEN = "fault-isolation-admin-token"

RULES = """
[[rule]]
id = "onboarding-completed"
source = "wattshift.onboarding"
field = "status"
to = "COMPLETED"
channels = ["partner"]

[[rule]]
id = "home-changed"
source = "wattshift.onboarding"
field = "status"
changed = true
channels = ["partner"]

[[rule]]
id = "home-gone"
source = "wattshift.onboarding"
event = "disappeared"
channels = ["partner"]

[[rule]]
id = "provider-down"
source = "bridge.provider"
field = "status"
to = "down"
channels = ["partner"]

[[rule]]
id = "provider-retry-after-capped"
source = "bridge.provider"
field = "retry_after_capped"
to = true
channels = ["partner"]
"""

HUGE = {"Retry-After": "99999"}
FAULTS = {
    "500-with-retry-after": ({"status": 500, "headers": HUGE}, False),
    "429-retry-after-99999": ({"status": 429, "headers": HUGE}, True),
    "503-retry-after-99999": ({"status": 503, "headers": HUGE}, True),
    "503-retry-after-40-digits": ({"status": 503, "headers": {"Retry-After": "9" * 40}}, True),
    "503-retry-after-year-9999": (
        {"status": 503, "headers": {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}},
        True,
    ),
    "503-retry-after-negative": ({"status": 503, "headers": {"Retry-After": "-99999"}}, False),
    "503-retry-after-malformed": ({"status": 503, "headers": {"Retry-After": "tomorrow-ish"}}, False),
    "timeout": ({"kind": "slow", "delay": 1.5}, False),  # past the provider's 1 s timeout
    "oversized-body": ({"status": 201, "body": b'{"homeId": "' + b"x" * 200_000 + b'"}'}, False),
    "endless-body": ({"kind": "endless"}, False),
    "garbage-body": ({"kind": "garbage"}, False),
}


@pytest.fixture
async def ws(aiohttp_server, clock) -> WattShiftSimulator:
    sim = WattShiftSimulator(clock=clock)
    server = await aiohttp_server(sim.app())
    sim.base_url = str(server.make_url("")).rstrip("/")
    return sim


@pytest.fixture
def ws_config(tmp_path, ws, sink, webhook_secret):
    def make(**provider: object) -> Config:
        (tmp_path / "rules.toml").write_text(textwrap.dedent(RULES))
        return Config.model_validate(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'bridge.db'}"},
                "server": {"admin_token": ADMIN_TOKEN},
                "rules": {"paths": [str(tmp_path / "rules.toml")]},
                "providers": {
                    "ws": {
                        "kind": "wattshift",
                        "base_url": ws.base_url,
                        "api_key": DEFAULT_API_KEY,
                        "discover": True,  # so a skipped home that read as gone would show
                        "poll_interval": "2s",
                        # Real seconds: a healthy answer on a loaded CI machine must not time out.
                        "timeout": "1s",
                        "max_body_bytes": 65536,
                        "max_requests_per_second": 1000,
                        **provider,
                    }
                },
                "channels": {"partner": {"kind": "webhook", "url": sink.url, "secret": webhook_secret}},
            }
        )

    return make


async def poll(bridge):
    return await bridge.app[POLLER].poll(bridge.app[PROVIDERS]["ws"], "homes")


async def snapshot(bridge, home):
    return await bridge.store.get_snapshot(
        ResourceKey(source=SOURCE_ONBOARDING, provider="ws", resource_id=home)
    )


async def fired(bridge) -> list[str]:
    return sorted(e.rule_id for e in await bridge.store.list_events(limit=100))


@pytest.mark.parametrize(("fault", "capped"), list(FAULTS.values()), ids=list(FAULTS))
async def test_one_bad_home_backs_off_alone_and_recovers_by_itself(ws, ws_config, make_bridge, fault, capped):
    bad, good = ws.add_home(), ws.add_home()
    ws.start(bad)
    ws.start(good)
    bridge = await make_bridge(ws_config())
    await poll(bridge)  # the baseline of both homes
    bad_before = await snapshot(bridge, bad)
    assert bad_before is not None, "the baseline poll did not read the bad home"
    assert await snapshot(bridge, good) is not None, "the baseline poll did not read the good home"
    ws.fail("status", resource=bad, times=None, **fault)

    for n in range(POLLS):
        bridge.clock.advance(INTERVAL)
        step = ws.advance(good)
        summary = await poll(bridge)
        # Read on time, every time: the good home's stored step is the one it just reached.
        stored = await snapshot(bridge, good)
        assert stored is not None
        assert stored.state["step"] == step, f"poll {n}: the healthy home was not read"
        assert summary.deferred_until is None
    assert ws.asked[good] == POLLS + 1
    # The bad one was asked at 1, 2, 4, 8, 16 intervals (or once, for a Retry-After of the cap).
    assert 1 <= ws.asked[bad] - 1 <= 6
    assert ws.faults.pending("status", bad) == -1  # still failing when asked

    health = bridge.app[HEALTH].get("ws")
    assert health.status == "degraded"  # never down: the provider answers
    [(rid, deferral)] = health.backing_off(bridge.clock.now()).items()
    assert rid == bad
    resp = await bridge.client.get("/api/providers", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    api = (await resp.json())["items"][0]["health"]
    assert (api["status"], api["resources_backing_off"], api["deferred_until"]) == ("degraded", 1, None)
    [shown] = api["backing_off"]
    assert shown["resource_id"] == bad
    assert shown["cause"] == deferral.cause
    assert api["retry_after_capped"] is capped
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'wattbridge_provider_resources_backing_off{provider="ws"} 1.0' in metrics
    assert (await snapshot(bridge, bad)) == bad_before  # nothing changed, nothing disappeared
    # Nothing spurious: the one bridge.provider event is a capped Retry-After, fired once.
    assert await fired(bridge) == (["provider-retry-after-capped"] if capped else [])
    assert deferral.capped is capped
    if capped:
        assert "capped to 300s" in deferral.cause

    # The bad home answers again: at the latest one cap later it is read, and all is well.
    ws.faults.clear("status", bad)
    ws.complete(bad)
    bridge.clock.advance(CAP)
    await poll(bridge)
    assert (await snapshot(bridge, bad)).state["status"] == "COMPLETED"
    assert health.status == "ok"
    assert health.backing_off(bridge.clock.now()) == {}
    state = (
        await bridge.store.get_snapshot(ResourceKey(source=HEALTH_SOURCE, provider="ws", resource_id="ws"))
    ).state
    assert state["resources_backing_off"] == 0
    assert state["retry_after_capped"] is False
    assert sorted(set(await fired(bridge)) - {"provider-retry-after-capped"}) == [
        "home-changed",
        "onboarding-completed",
    ]


async def test_a_429_for_every_home_defers_the_whole_provider_until_its_retry_after(
    ws, ws_config, make_bridge
):
    homes = [ws.add_home(), ws.add_home()]
    bridge = await make_bridge(ws_config())
    await poll(bridge)
    ws.fail("status", status=429, times=2, headers={"Retry-After": "30"})

    bridge.clock.advance(INTERVAL)
    limited = await poll(bridge)
    assert limited.deferred_until == bridge.clock.now() + timedelta(seconds=30)
    asked = dict(ws.asked)
    for _ in range(14):  # 28 s: every poll is skipped without a request
        bridge.clock.advance(INTERVAL)
        summary = await poll(bridge)
        assert summary.deferred_until == limited.deferred_until
    assert dict(ws.asked) == asked
    health = bridge.app[HEALTH].get("ws")
    deferral = health.deferral(bridge.clock.now())
    assert deferral is not None
    assert (
        deferral.describe()
        == f"deferred until {limited.deferred_until.isoformat()} (HTTP 429, Retry-After 30s)"
    )
    page = await (await bridge.client.get("/metrics")).text()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }
    key = (
        "wattbridge_provider_deferred_until_timestamp_seconds",
        (("cause", "rate_limited"), ("provider", "ws")),
    )
    assert samples[key] == limited.deferred_until.timestamp()

    bridge.clock.advance(INTERVAL)
    resumed = await poll(bridge)
    assert resumed.deferred_until is None
    assert resumed.observed == 2
    assert all(ws.asked[h] == asked[h] + 1 for h in homes)
    assert await fired(bridge) == []


async def test_a_huge_429_for_every_home_waits_only_the_cap_and_fires_one_event(ws, ws_config, make_bridge):
    ws.add_home()
    bridge = await make_bridge(ws_config())
    await poll(bridge)
    ws.fail("status", status=429, times=None, headers=HUGE)

    waits = []
    for _ in range(3):
        summary = await poll(bridge)
        assert summary.deferred_until is not None
        waits.append(summary.deferred_until - bridge.clock.now())
        bridge.clock.set(summary.deferred_until)
    assert waits == [CAP] * 3
    # One capped event however often it repeats; three refused polls in a row (15 minutes) are a
    # provider that is down, which ops should hear about too, once.
    assert await fired(bridge) == ["provider-down", "provider-retry-after-capped"]
    state = (
        await bridge.store.get_snapshot(ResourceKey(source=HEALTH_SOURCE, provider="ws", resource_id="ws"))
    ).state
    assert state["deferred_cause"] == "HTTP 429, Retry-After 99999s capped to 300s"


async def test_a_podero_fleet_read_by_id_reads_every_good_wallbox_on_time(make_config, make_bridge, podero):
    user = podero.add_user(email="fleet@example.com")
    boxes = [podero.add_wallbox(user) for _ in range(6)]
    bad = boxes[2]
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": b} for b in boxes]))
    await bridge.poll()
    podero.fail("wallbox", status=502, times=None, resource=bad)
    start = len(podero.requests)

    summaries = []
    for _ in range(10):
        bridge.clock.advance(timedelta(seconds=60))
        summaries.append(await bridge.poll())

    asked = [p for _, p in podero.requests[start:]]
    for b in boxes:
        n = sum(p.endswith(f"/wallboxes/{b}") for p in asked)
        assert n == (4 if b == bad else 10), b  # bad: after 1, 2, 4 (then 8) intervals
    assert sum(s.skipped for s in summaries) == 6
    assert all(s.observed == 5 for s in summaries)
    assert await fired(bridge) == []
    assert bridge.app[HEALTH].get("podero").status == "degraded"


async def test_the_status_page_shows_who_is_deferred_until_when_and_why(ws, ws_config, make_bridge):
    bad, _good = ws.add_home(), ws.add_home()
    bridge = await make_bridge(ws_config())
    await poll(bridge)
    ws.fail("status", resource=bad, times=None, status=503, headers=HUGE)
    bridge.clock.advance(INTERVAL)
    await poll(bridge)
    until = bridge.app[HEALTH].get("ws").backing_off(bridge.clock.now())[bad].until

    client = bridge.client
    assert (await client.post("/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)).status == 303
    html = await (await client.get("/")).text()
    assert (
        f"<code>{bad}</code> deferred until {until.strftime('%Y-%m-%d %H:%M:%SZ')} "
        "(HTTP 503, Retry-After 99999s capped to 300s)"
    ) in html
    assert '<span class="badge degraded">degraded</span>' in html
