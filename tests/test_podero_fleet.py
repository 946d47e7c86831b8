"""The Podero fleet end to end on the simulator: heat pumps, EVs and inverters through poll, rules and
webhooks (baseline quiet, a change, a failed poll quiet), and an onboarding session whose device is
watched from the next cycle."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.config.models import PoderoConfig
from bridge.model import ResourceKey, Watch

FLEET_RULES = """
[[rule]]
id = "ev-boost-stuck"
source = "podero.electric_vehicle"
field = "boost_state"
to = "requested"
for = "10m"
type = "ev.boost_stuck"
channels = ["partner"]

[[rule]]
id = "ev-charging-started"
source = "podero.electric_vehicle"
field = "is_charging"
from = false
to = true
type = "ev.charging_started"
channels = ["partner"]

[[rule]]
id = "heat-pump-error"
source = "podero.heat_pump"
field = "connection_status"
to = "error"
type = "heat_pump.connection_error"
channels = ["partner"]

[[rule]]
id = "inverter-battery-low"
source = "podero.inverter"
field = "battery_charge_level_percent"
below = 15
type = "inverter.battery_low"
channels = ["partner"]

[[rule]]
id = "onboarding-finished"
source = "podero.onboarding_session"
field = "status"
to = "finished"
type = "onboarding.finished"
channels = ["partner"]
"""


@pytest.fixture
async def fleet(make_config, make_bridge, podero):
    user = podero.add_user(email="ada@example.com")
    hp = podero.add_heat_pump(user)
    ev = podero.add_electric_vehicle(user, is_plugged_in=True, boost_state="available")
    iv = podero.add_inverter(user)
    config = make_config(rules=FLEET_RULES)
    providers = dict(config.providers)
    providers["podero"] = PoderoConfig.model_validate(
        {
            **providers["podero"].model_dump(),
            "heat_pumps": [{"user_id": user, "heat_pump_id": hp}],
            "electric_vehicles": [{"user_id": user, "electric_vehicle_id": ev}],
            "inverters": [{"user_id": user, "inverter_id": iv}],
        }
    )
    bridge = await make_bridge(config.model_copy(update={"providers": providers}))
    return bridge, user, hp, ev, iv


async def poll_devices(bridge) -> int:
    events = 0
    for group in ("heat_pumps", "electric_vehicles", "inverters"):
        summary = await bridge.poll(group)
        assert summary.ok, group
        events += summary.events
    return events


async def test_baseline_and_volatile_reads_are_quiet_then_changes_fire(fleet, podero, sink):
    bridge, _, hp, ev, iv = fleet
    assert await poll_devices(bridge) == 0  # baseline
    bridge.clock.advance(timedelta(minutes=1))
    assert await poll_devices(bridge) == 0  # live readings and stamps moved: nothing

    podero.update_device(hp, connection_status="error")
    podero.update_device(ev, is_charging=True)
    podero.update_device(iv, battery_charge_level_percent=9)
    bridge.clock.advance(timedelta(minutes=1))
    assert await poll_devices(bridge) == 3
    await bridge.deliver()
    await sink.wait_for(3)
    by_type = {h.json["type"]: h.json["data"] for h in sink.received}
    assert set(by_type) == {"heat_pump.connection_error", "ev.charging_started", "inverter.battery_low"}
    assert by_type["heat_pump.connection_error"]["resource_id"] == hp
    assert by_type["inverter.battery_low"]["state"]["battery_charge_level_percent"] == 9


async def test_a_failed_poll_is_quiet_and_the_next_good_one_notifies_once(fleet, podero, sink):
    bridge, _, _, ev, _ = fleet
    assert await poll_devices(bridge) == 0
    podero.update_device(ev, is_charging=True)
    podero.fail("electric_vehicle", status=503)
    summary = await bridge.poll("electric_vehicles")
    assert (summary.ok, summary.events) == (False, 0)
    summary = await bridge.poll("electric_vehicles")
    assert summary.events == 1
    assert (await bridge.poll("electric_vehicles")).events == 0


async def test_an_ev_boost_stuck_in_requested_fires_after_its_hold(fleet, podero, sink):
    bridge, _, _, ev, _ = fleet
    await poll_devices(bridge)
    podero.update_device(ev, boost_state="requested")
    assert (await bridge.poll("electric_vehicles")).events == 0  # the hold starts
    bridge.clock.advance(timedelta(minutes=11))
    assert await bridge.tick() == 1
    await bridge.deliver()
    await sink.wait_for(1)
    assert sink.received[0].json["type"] == "ev.boost_stuck"


async def test_a_boost_that_starts_in_time_never_fires(fleet, podero, sink):
    bridge, _, _, ev, _ = fleet
    await poll_devices(bridge)
    podero.update_device(ev, boost_state="requested")
    await bridge.poll("electric_vehicles")
    bridge.clock.advance(timedelta(minutes=2))
    podero.update_device(ev, boost_state="ongoing", is_charging=True)
    assert (await bridge.poll("electric_vehicles")).events == 1  # charging started, not stuck
    bridge.clock.advance(timedelta(minutes=20))
    assert await bridge.tick() == 0


@pytest.mark.parametrize(
    ("skip_to", "source", "group"),
    [
        pytest.param("hp", "podero.heat_pump", "heat_pumps", id="heat-pump"),
        pytest.param("ev", "podero.electric_vehicle", "electric_vehicles", id="electric-vehicle"),
    ],
)
async def test_the_device_an_onboarding_creates_is_watched_from_the_next_cycle(
    fleet, podero, sink, skip_to, source, group
):
    bridge, user, *_ = fleet
    sid = podero.add_onboarding_session(user, skip_to=skip_to)
    key = ResourceKey(source="podero.onboarding_session", provider="podero", resource_id=sid)
    await bridge.store.add_watch(Watch(key=key, created_at=bridge.clock.now()))
    assert (await bridge.poll("onboarding")).events == 0  # baseline: pending
    device = podero.finish_onboarding(sid)

    assert (await bridge.poll("onboarding")).events == 1
    await bridge.deliver()
    await sink.wait_for(1)
    finished = sink.received[0].json["data"]
    assert finished["state"]["device"] == {"id": device, "source": source}
    [ended] = await bridge.store.list_watches(source="podero.onboarding_session", active_only=False)
    assert ended.end_reason == "finished"
    watched = [w.key.resource_id for w in await bridge.store.list_watches(source=source)]
    assert device in watched

    await bridge.poll(group)  # the next cycle: the new device's baseline
    snap = await bridge.store.get_snapshot(ResourceKey(source=source, provider="podero", resource_id=device))
    assert snap is not None
    assert snap.state is not None
    assert snap.state["owner"]["id"] == user
