"""Rule timers end to end (Podero simulator → bridge → webhook sink), on a ManualClock: a hold fires
only when it has lasted, survives a restart without doubling, breaks when the condition stops;
reminders repeat; `resolve` sends a `resolved` notification; silences suppress but keep."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.app_keys import RULEBOOK
from bridge.model import Silence

WB = "00000000-0000-4000-8000-0000000000c1"

HELD = """
[[rule]]
id = "action-needed-held"
source = "podero.wallbox"
field = "action_needed"
to = true
for = "2m"
repeat = "1h"
repeat_max = 2
resolve = true
type = "wallbox.action_needed"
channels = ["partner"]
"""


@pytest.fixture
def wallbox(podero):
    user = podero.add_user(email="grace@example.com")
    return {"user_id": user, "wallbox_id": podero.add_wallbox(user, wallbox_id=WB)}


@pytest.fixture
def config(make_config, wallbox):
    return make_config(rules=HELD, wallboxes=[wallbox])


async def started(make_bridge, config):
    b = await make_bridge(config)
    await b.poll()  # baseline
    return b


async def step(bridge, seconds: float) -> None:
    bridge.clock.advance(timedelta(seconds=seconds))
    await bridge.poll()
    await bridge.tick()
    await bridge.deliver()


def statuses(sink) -> list[tuple[str, int]]:
    return [(h.json["data"]["status"], h.json["data"]["sequence"]) for h in sink.received]


async def test_a_hold_fires_only_once_it_has_lasted_then_reminds_and_resolves(
    make_bridge, config, podero, sink
):
    bridge = await started(make_bridge, config)
    podero.add_action(WB, code="reauthenticate")
    await step(bridge, 60)  # the trigger: hold starts
    await step(bridge, 60)  # 1 min held: nothing yet
    assert sink.received == []

    await step(bridge, 60)  # 2 min: fires
    await sink.wait_for(1)
    await step(bridge, 3600)  # first reminder
    await step(bridge, 3600)  # second reminder (repeat_max = 2)
    await step(bridge, 3600)  # no third
    podero.resolve_action(WB, "reauthenticate")
    await step(bridge, 60)  # resolved
    await sink.wait_for(4)

    assert statuses(sink) == [("firing", 1), ("firing", 2), ("firing", 3), ("resolved", 4)]
    first = sink.received[0].json["data"]
    assert {"field": "action_needed", "old": False, "new": True} in first["changes"]
    assert len({h.headers["webhook-id"] for h in sink.received}) == 4


async def test_a_hold_broken_before_it_lasts_sends_nothing(make_bridge, config, podero, sink):
    bridge = await started(make_bridge, config)
    podero.add_action(WB, code="reauthenticate")
    await step(bridge, 60)
    podero.resolve_action(WB, "reauthenticate")
    await step(bridge, 60)
    await step(bridge, 600)

    assert sink.received == []
    assert await bridge.store.list_rule_states() == []


async def test_a_running_hold_survives_a_restart_and_fires_once(
    make_bridge, config, podero, sink, aiohttp_client
):
    bridge = await started(make_bridge, config)
    podero.add_action(WB, code="reauthenticate")
    await step(bridge, 60)
    [pending] = await bridge.store.list_rule_states()
    assert pending.phase == "pending"
    await bridge.client.close()  # the process stops with the hold running

    restarted = await make_bridge(config)  # same SQLite file, same clock
    restarted.clock.advance(timedelta(minutes=2))
    assert await restarted.tick() == 1
    assert await restarted.tick() == 0  # not doubled
    await restarted.deliver()
    await sink.wait_for(1)

    assert statuses(sink) == [("firing", 1)]


async def test_a_silence_records_the_notification_as_suppressed_and_replay_sends_it(
    make_bridge, config, podero, sink
):
    bridge = await started(make_bridge, config)
    now = bridge.clock.now()
    await bridge.store.add_silence(
        Silence(
            id="sil_test",
            resource="00000000-*",
            starts_at=now,
            ends_at=now + timedelta(hours=1),
            comment="maintenance window",
            created_by="ops",
            created_at=now,
        )
    )
    podero.add_action(WB, code="reauthenticate")
    await step(bridge, 60)
    await step(bridge, 120)

    assert sink.received == []
    [suppressed] = await bridge.store.list_deliveries(status="suppressed")
    assert await bridge.store.replay([suppressed.id], bridge.clock.now()) == 1
    await bridge.deliver()
    await sink.wait_for(1)
    assert sink.received[0].headers["webhook-id"] == suppressed.id


COOLDOWN_AND_HYSTERESIS = """
[[rule]]
id = "fast-charging"
source = "podero.wallbox"
field = "charge_rate_w"
above = 7000
hysteresis = 1000
channels = ["partner"]

[[rule]]
id = "plugged"
source = "podero.wallbox"
field = "is_plugged_in"
to = true
cooldown = "10m"
channels = ["partner"]
"""


async def test_hysteresis_ignores_a_bounce_and_cooldown_limits_repeats(
    make_bridge, make_config, wallbox, podero, sink
):
    bridge = await started(make_bridge, make_config(rules=COOLDOWN_AND_HYSTERESIS, wallboxes=[wallbox]))
    for rate in (7400, 6800, 7300, 5500, 7200):  # fires, bounce (no re-fire), re-arms, fires again
        podero.update_wallbox(WB, charge_rate_w=rate)
        await step(bridge, 60)
    for plugged in (True, False, True, False, True):  # within 10 min: only the first fires
        podero.update_wallbox(WB, is_plugged_in=plugged)
        await step(bridge, 60)
    podero.update_wallbox(WB, is_plugged_in=False)
    await step(bridge, 600)
    podero.update_wallbox(WB, is_plugged_in=True)  # the cooldown has passed
    await step(bridge, 60)
    await sink.wait_for(4)

    assert [h.json["data"]["rule"] for h in sink.received] == [
        "fast-charging",
        "fast-charging",
        "plugged",
        "plugged",
    ]


async def test_a_reload_keeps_a_running_hold_and_drops_the_timers_of_a_removed_rule(
    make_bridge, config, podero, sink, tmp_path
):
    bridge = await started(make_bridge, config)
    podero.add_action(WB, code="reauthenticate")
    await step(bridge, 60)
    rules_file = tmp_path / "rules" / "test.toml"
    rules_file.write_text(HELD.replace('type = "wallbox.action_needed"', 'type = "wallbox.needs_action"'))
    assert bridge.app[RULEBOOK].reload() is None

    await step(bridge, 120)  # the hold started before the reload ends on time, once
    await sink.wait_for(1)
    assert statuses(sink) == [("firing", 1)]
    assert sink.received[0].json["type"] == "wallbox.needs_action"

    rules_file.write_text(HELD.replace('id = "action-needed-held"', 'id = "renamed"'))
    assert bridge.app[RULEBOOK].reload() is None
    await bridge.tick()
    assert await bridge.store.list_rule_states() == []
