"""Podero onboarding sessions, discovery listings and provider health, end to end on the simulator."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.app_keys import HEALTH
from bridge.model import ResourceKey, Watch

ONBOARDING_RULES = """
[[rule]]
id = "podero-onboarding-finished"
source = "podero.onboarding_session"
field = "status"
to = "finished"
type = "onboarding.finished"
channels = ["partner"]

[[rule]]
id = "podero-onboarding-expired"
source = "podero.onboarding_session"
field = "status"
to = "expired"
type = "onboarding.expired"
channels = ["partner"]

[[rule]]
id = "wallbox-appeared"
source = "podero.wallbox"
event = "appeared"
type = "wallbox.appeared"
channels = ["partner"]

[[rule]]
id = "wallbox-disappeared"
source = "podero.wallbox"
event = "disappeared"
type = "wallbox.disappeared"
channels = ["partner"]

[[rule]]
id = "provider-down"
source = "bridge.provider"
field = "status"
to = "down"
type = "provider.down"
channels = ["ops"]
"""


@pytest.fixture
async def bridge(make_config, make_bridge, podero):
    podero.user_id = podero.add_user(email="ada@example.com")
    config = make_config(rules=ONBOARDING_RULES)
    providers = dict(config.providers)
    providers["podero"] = providers["podero"].model_copy(update={"discover": True})
    return await make_bridge(config.model_copy(update={"providers": providers}))


async def watch_session(bridge, session_id: str) -> None:
    key = ResourceKey(source="podero.onboarding_session", provider="podero", resource_id=session_id)
    await bridge.store.add_watch(Watch(key=key, created_at=bridge.clock.now()))


async def test_a_finished_onboarding_fires_once_and_ends_its_watch(bridge, podero, sink):
    sid = podero.add_onboarding_session(podero.user_id)
    await watch_session(bridge, sid)
    assert (await bridge.poll("onboarding")).events == 0  # baseline: pending
    podero.finish_onboarding(sid)
    summary = await bridge.poll("onboarding")
    assert summary.events == 1
    await sink.wait_for(1)
    [hook] = sink.received
    assert hook.json["type"] == "onboarding.finished"
    assert hook.json["data"]["state"]["object_id"]
    assert await bridge.store.list_watches(source="podero.onboarding_session") == []
    [ended] = await bridge.store.list_watches(source="podero.onboarding_session", active_only=False)
    assert ended.end_reason == "finished"
    assert (await bridge.poll("onboarding")).observed == 0  # no longer polled


async def test_an_onboarding_session_expires_after_the_end_of_its_expiration_date(bridge, podero, sink):
    sid = podero.add_onboarding_session(podero.user_id)
    await watch_session(bridge, sid)
    await bridge.poll("onboarding")
    bridge.clock.advance(timedelta(days=1))
    assert (await bridge.poll("onboarding")).events == 0  # still within "the end of the next day"
    bridge.clock.advance(timedelta(days=1))
    assert (await bridge.poll("onboarding")).events == 1
    await sink.wait_for(1)
    assert sink.received[0].json["type"] == "onboarding.expired"


async def test_discovery_baselines_then_reports_appeared_and_disappeared_wallboxes(bridge, podero, sink):
    first = podero.add_wallbox(podero.user_id)
    assert (await bridge.poll()).events == 0  # the first listing is the baseline
    second = podero.add_wallbox(podero.user_id)
    assert (await bridge.poll()).events == 1
    await sink.wait_for(1)
    assert sink.received[0].json["type"] == "wallbox.appeared"
    assert sink.received[0].json["data"]["resource_id"] == second
    podero.soft_delete_wallbox(first)  # listed with include_deleted: a change, not a disappearance
    assert (await bridge.poll()).events == 0


async def test_a_failed_listing_page_makes_nothing_disappear(bridge, podero, sink):
    podero.add_wallbox(podero.user_id)
    await bridge.poll()
    podero.fail("user_wallboxes", status=502, times=1)
    summary = await bridge.poll()
    assert not summary.ok
    assert summary.events == 0
    assert await bridge.deliver() == 0
    assert sink.received == []


async def test_a_failed_user_listing_cancels_the_other_listings_and_makes_nothing_disappear(
    make_config, make_bridge, podero, sink
):
    users = [podero.add_user(email=f"user{n}@example.com") for n in range(6)]
    boxes = [podero.add_wallbox(user) for user in users]
    config = make_config(rules=ONBOARDING_RULES)
    providers = dict(config.providers)
    # One listing at a time: the failing one is the first, and the others would wait behind it.
    providers["podero"] = providers["podero"].model_copy(update={"discover": True, "max_concurrency": 1})
    bridge = await make_bridge(config.model_copy(update={"providers": providers}))
    assert (await bridge.poll()).events == 0  # baseline: every wallbox is stored
    podero.requests.clear()
    podero.fail("user_wallboxes", status=502, times=1)

    bridge.clock.advance(timedelta(seconds=60))
    summary = await bridge.poll()

    assert not summary.ok
    assert "provider unavailable" in bridge.app[HEALTH].get("podero").last_error
    listings = [path for _, path in podero.requests if path.endswith("/wallboxes")]
    assert 1 <= len(listings) < len(users)  # the failure cancelled the listings still to come
    assert summary.events == 0
    stored = await bridge.store.get_snapshots("podero", "podero.wallbox")
    assert sorted(rid for rid, snap in stored.items() if snap.state is not None) == sorted(boxes)
    assert await bridge.deliver() == 0
    assert sink.received == []


async def test_a_provider_that_keeps_failing_is_down_once_and_ops_are_told(bridge, podero, mailbox):
    podero.add_wallbox(podero.user_id)
    await bridge.poll()
    podero.fail("users", status=503, times=5)
    for _ in range(5):
        bridge.clock.advance(timedelta(seconds=60))
        await bridge.poll()
        await bridge.deliver()  # finish sends before time moves on (a lease outlives a real send)
    health = bridge.app[HEALTH].get("podero")
    assert health.status == "down"
    assert health.consecutive_failures == 5
    await mailbox.wait_for(1)
    await bridge.deliver()
    assert len(mailbox.messages) == 1
    assert "provider.down" in str(mailbox.messages[0]["Subject"])
    bridge.clock.advance(timedelta(seconds=60))
    assert (await bridge.poll()).ok
    assert bridge.app[HEALTH].get("podero").status == "ok"
