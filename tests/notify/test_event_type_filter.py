"""A per-channel event-type filter (#15): `event_types` globs decide which events of the rules that
name a channel get a delivery on it; the others get none (not even a suppressed one)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from bridge.config.models import WebhookChannelConfig
from tests.conftest import DEFAULT_RULES, WEBHOOK_SECRET


async def test_a_channel_takes_only_the_event_types_its_globs_match(make_config, make_bridge, podero, sink):
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user, is_plugged_in=True)
    channels = {
        # Both default rules send to partner; it takes the action-needed type only.
        "partner": {
            "kind": "webhook",
            "url": sink.url,
            "secret": WEBHOOK_SECRET,
            "event_types": ["*.action_*"],
        },
        "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
    }
    bridge = await make_bridge(
        make_config(rules=DEFAULT_RULES, wallboxes=[{"user_id": user, "wallbox_id": wb}], channels=channels)
    )
    await bridge.poll()
    podero.update_wallbox(wb, is_charging=True)
    podero.add_action(wb, code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()

    events = {e.type for e in await bridge.store.list_events(limit=10)}
    assert events == {"wallbox.charging_started", "wallbox.action_needed"}
    assert [h.json["type"] for h in sink.verified] == ["wallbox.action_needed"]
    assert len(await bridge.store.list_deliveries(channel="partner", limit=10)) == 1
    assert len(await bridge.store.list_deliveries(channel="ops", limit=10)) == 1  # unfiltered


def test_an_empty_filter_is_refused():
    with pytest.raises(ValidationError, match="list at least one event type or glob"):
        WebhookChannelConfig(kind="webhook", url="https://x.example/h", secret=WEBHOOK_SECRET, event_types=[])


@pytest.mark.parametrize(
    ("globs", "event_type", "accepted"),
    [
        (None, "anything", True),
        (["wallbox.*"], "wallbox.action_needed", True),
        (["wallbox.*"], "provider.down", False),
        (["provider.down", "onboarding.?ompleted"], "onboarding.completed", True),
        (["Wallbox.*"], "wallbox.x", False),  # case matters: types are identifiers
    ],
)
def test_globs_match_event_types(globs, event_type, accepted):
    cfg = WebhookChannelConfig(
        kind="webhook", url="https://x.example/h", secret=WEBHOOK_SECRET, event_types=globs
    )
    assert cfg.accepts(event_type) is accepted
