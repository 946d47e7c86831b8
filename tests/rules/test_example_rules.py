"""The example rules in `rules/` load with config.example.toml's channels and fire as their
descriptions say, on states the simulators really send (and stay quiet on the near misses)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge import errors
from bridge.clock import ManualClock
from bridge.config.loader import load_config
from bridge.model import Event, EventKind, ResourceKey
from bridge.notify.render import template_context
from bridge.notify.rulebook import load_for
from bridge.poll.diff import diff
from bridge.poll.health import HealthBoard
from bridge.providers.podero import with_status
from bridge.rules import flap
from bridge.rules.engine import Firing, RuleSet
from bridge.rules.state import on_due, on_observation
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.realto import RealtoSimulator
from bridge.simulator.wattshift import WattShiftSimulator

FIRED: set[str] = set()  # every example rule some test below saw firing


@pytest.fixture(scope="module")
def rules() -> RuleSet:
    root = Path(__file__).resolve().parents[2]
    config = load_config(root / "config.example.toml", environ={})
    return load_for(config)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def fire(
    rs: RuleSet,
    source: str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
    kind: EventKind = "changed",
) -> list[Firing]:
    """What the poller's rule stage decides for one resource's old → new."""
    changes = diff(old, new, source=source, keep=rs.keep_fields(source))
    firings = rs.evaluate(source=source, kind=kind, old=old, new=new, changes=changes)
    FIRED.update(f.rule.id for f in firings)
    return firings


def ids(firings: list[Firing]) -> list[str]:
    return [f.rule.id for f in firings]


def email(rs: RuleSet, firing: Firing, source: str, old: Any, new: Any, at: datetime) -> tuple[str, str]:
    key = ResourceKey(source=source, provider=source.split(".")[0], resource_id="res-1")
    event = Event(
        id="evt_1", rule_id=firing.rule.id, type=firing.rule.type, status="firing",
        severity=firing.rule.severity, key=key, sequence=1, changes=firing.changes, state=new, occurred_at=at,
    )  # fmt: skip
    return rs.render_email(firing.rule, context=template_context(event, old))


@pytest.fixture
def podero(clock: ManualClock) -> tuple[PoderoSimulator, str, str]:
    sim = PoderoSimulator(clock=clock)
    user = sim.add_user(email="ada@example.com", first_name="Ada", last_name="Lovelace")
    return sim, user, sim.add_wallbox(user, is_plugged_in=True)


def read(sim: PoderoSimulator, wallbox: str, clock: ManualClock) -> dict[str, Any]:
    clock.advance(60)  # every read moves the volatile fields and re-signs action URLs
    return sim.wallbox(wallbox)


def test_every_example_file_loads_with_the_example_configs_channels(rules):
    files = {Path(r.file).name for r in rules.rules}
    assert files == {p.name for p in (Path(__file__).resolve().parents[2] / "rules").glob("*.toml")}
    assert all(set(r.channels) <= {"partner", "ops"} for r in rules.rules)


def test_wallbox_action_needed_and_resolved(rules, podero, clock):
    sim, _, wb = podero
    idle = read(sim, wb, clock)
    sim.add_action(wb, "reauthenticate")
    needs = read(sim, wb, clock)
    still = read(sim, wb, clock)  # the same action under a freshly signed URL
    sim.resolve_action(wb, "reauthenticate")
    resolved = read(sim, wb, clock)

    [needed] = fire(rules, "podero.wallbox", idle, needs)
    assert still["actions"] != needs["actions"]
    assert fire(rules, "podero.wallbox", needs, still) == []
    assert ids(fire(rules, "podero.wallbox", still, resolved)) == ["wallbox-action-resolved"]

    assert needed.rule.id == "wallbox-action-needed"
    subject, body = email(rules, needed, "podero.wallbox", idle, needs, clock.now())
    assert subject == "Wallbox Charge Lite of ada@example.com needs action"
    assert "- reauthenticate" in body
    assert "send the owner through the reauthentication flow" in body
    assert "template error" not in body


def test_an_information_action_also_needs_action_but_asks_for_no_reauthentication(rules, podero, clock):
    sim, _, wb = podero
    idle = read(sim, wb, clock)
    sim.add_action(wb, "information", message="Firmware update tonight")
    info = read(sim, wb, clock)

    [needed] = fire(rules, "podero.wallbox", idle, info)

    _, body = email(rules, needed, "podero.wallbox", idle, info, clock.now())
    assert "- information: Firmware update tonight" in body
    assert "reauthentication" not in body


def test_charging_started(rules, podero, clock):
    sim, _, wb = podero
    plugged = read(sim, wb, clock)
    sim.update_wallbox(wb, is_charging=True, charge_rate_w=7200)
    charging = read(sim, wb, clock)

    assert ids(fire(rules, "podero.wallbox", plugged, charging)) == ["charging-started"]
    assert fire(rules, "podero.wallbox", charging, read(sim, wb, clock)) == []


def test_charge_power_dropped_only_while_charging_and_only_on_the_crossing(rules, podero, clock):
    sim, _, wb = podero
    sim.update_wallbox(wb, is_charging=True, charge_rate_w=7200)
    fast = read(sim, wb, clock)
    sim.update_wallbox(wb, charge_rate_w=800)
    slow = read(sim, wb, clock)
    sim.update_wallbox(wb, charge_rate_w=600)
    slower = read(sim, wb, clock)
    sim.update_wallbox(wb, is_charging=False, charge_rate_w=0)
    stopped = read(sim, wb, clock)

    assert ids(fire(rules, "podero.wallbox", fast, slow)) == ["charge-power-dropped"]
    assert fire(rules, "podero.wallbox", slow, slower) == []  # still below: no re-firing
    assert fire(rules, "podero.wallbox", fast, stopped) == []  # it stopped charging: not this alert


def test_wallbox_deleted(rules, podero, clock):
    sim, _, wb = podero
    live = read(sim, wb, clock)
    sim.soft_delete_wallbox(wb)

    assert ids(fire(rules, "podero.wallbox", live, read(sim, wb, clock))) == ["wallbox-deleted"]


def test_wallbox_disconnected_only_after_30_minutes_then_reminds_and_resolves(rules, podero, clock):
    sim, _, wb = podero
    online = read(sim, wb, clock)
    sim.update_wallbox(wb, is_ocpp_connected=False)
    offline = read(sim, wb, clock)

    fired = fire(rules, "podero.wallbox", online, offline)
    # rules/signal.toml's night-time variant (#14) fires on the same transition.
    assert sorted(ids(fired)) == ["wallbox-disconnected", "wallbox-offline-overnight"]
    [trigger] = [f for f in fired if f.rule.id == "wallbox-disconnected"]
    rule = trigger.rule
    key = ResourceKey(source="podero.wallbox", provider="podero", resource_id=wb)
    t0 = clock.now()
    hold = on_observation(
        rule.timing, rule_id=rule.id, key=key, prior=None, triggered=True,
        active=rule.active(offline), changes=trigger.changes, now=t0,
    )  # fmt: skip
    assert hold.emit is None
    assert hold.state is not None
    assert on_due(rule.timing, prior=hold.state, active=True, now=t0 + timedelta(minutes=29)).emit is None
    fired = on_due(rule.timing, prior=hold.state, active=True, now=t0 + timedelta(minutes=30))
    assert fired.emit == "firing"
    assert fired.state is not None
    reminder = on_due(rule.timing, prior=fired.state, active=True, now=t0 + timedelta(minutes=30, hours=12))
    assert reminder.emit == "firing"
    assert rule.active(offline)
    assert not rule.active(online)  # back online: `resolve = true` resolves it

    blip = on_observation(
        rule.timing, rule_id=rule.id, key=key, prior=hold.state, triggered=False,
        active=rule.active(online), changes=(), now=t0 + timedelta(minutes=5),
    )  # fmt: skip
    assert blip.emit is None
    assert blip.state is not None
    assert blip.state.phase == "idle"


def test_podero_onboarding_finished_and_expired(rules, podero, clock):
    sim, user, _ = podero
    done, late = sim.add_onboarding_session(user), sim.add_onboarding_session(user)

    def session(sid: str) -> dict[str, Any]:
        return with_status(sim.onboarding_session(sid), clock.now())

    pending_done, pending_late = session(done), session(late)
    sim.finish_onboarding(done)
    clock.advance(timedelta(days=2))

    assert ids(fire(rules, "podero.onboarding_session", pending_done, session(done))) == [
        "podero-onboarding-finished"
    ]
    assert ids(fire(rules, "podero.onboarding_session", pending_late, session(late))) == [
        "podero-onboarding-expired"
    ]


def test_wattshift_onboarding_completed_and_failed(rules, clock):
    sim = WattShiftSimulator(clock=clock)
    good, bad = sim.add_home(), sim.add_home()
    for home in (good, bad):
        sim.start(home, "ecobee")
    before = {h: sim.status(h) for h in (good, bad)}
    sim.advance(good, 2)
    sim.complete(good)
    sim.error(bad)

    assert ids(fire(rules, "wattshift.onboarding", before[good], sim.status(good))) == [
        "wattshift-onboarding-completed"
    ]
    assert ids(fire(rules, "wattshift.onboarding", before[bad], sim.status(bad))) == [
        "wattshift-onboarding-failed"
    ]


def test_realto_onboarding_succeeded_failed_and_canceled(rules, clock):
    sim = RealtoSimulator(clock=clock)
    ok, failed, canceled = sim.add_session(), sim.add_session(), sim.add_session()
    before = {s: sim.session(s) for s in (ok, failed, canceled)}
    sim.succeed(ok)
    sim.fail_session(failed, "OemRejected", "The manufacturer refused the consent")
    sim.cancel(canceled)

    source = "realto.guided_onboarding_session"
    assert ids(fire(rules, source, before[ok], sim.session(ok))) == ["realto-onboarding-succeeded"]
    assert ids(fire(rules, source, before[failed], sim.session(failed))) == ["realto-onboarding-failed"]
    assert ids(fire(rules, source, before[canceled], sim.session(canceled))) == ["realto-onboarding-failed"]


def test_provider_down_after_three_failed_polls_and_recovered(rules, clock):
    board = HealthBoard()
    board.success("podero", clock.now())
    states = [board.get("podero").as_state()]
    for _ in range(3):
        clock.advance(60)
        board.failure("podero", "podero GET wallbox: HTTP 503: provider unavailable", clock.now())
        states.append(board.get("podero").as_state())
    clock.advance(60)
    board.success("podero", clock.now())
    states.append(board.get("podero").as_state())

    fired = [ids(fire(rules, "bridge.provider", a, b)) for a, b in itertools.pairwise(states)]

    assert fired == [[], [], ["provider-down"], ["provider-recovered"]]
    [down] = fire(rules, "bridge.provider", states[2], states[3])
    subject, body = email(rules, down, "bridge.provider", states[2], states[3], clock.now())
    assert subject == "Provider res-1 is down"
    assert "3 failed polls in a row" in body
    assert "HTTP 503" in body


def test_a_capped_retry_after_fires_once_however_often_it_is_asked(rules, clock):
    board = HealthBoard()
    backoff = board.configure("ws", interval=timedelta(seconds=2), cap=timedelta(minutes=5))
    board.success("ws", clock.now())
    states = [board.get("ws").as_state(clock.now())]
    huge = errors.ProviderUnavailable(
        "ws POST status: HTTP 503", status=503, retry_after=300.0, retry_after_asked=99999.0
    )
    for _ in range(3):  # asked again at each cap, refused each time
        backoff.fetched({"good": None}, {"bad": huge}, clock.now())
        board.failure("ws", str(huge), clock.now(), partial=True)
        states.append(board.get("ws").as_state(clock.now()))
        clock.advance(timedelta(minutes=5))
    backoff.fetched({"good": None, "bad": None}, {}, clock.now())
    board.success("ws", clock.now())
    states.append(board.get("ws").as_state(clock.now()))

    fired = [ids(fire(rules, "bridge.provider", a, b)) for a, b in itertools.pairwise(states)]

    assert fired == [["provider-retry-after-capped"], [], [], []]
    [capped] = fire(rules, "bridge.provider", states[0], states[1])
    subject, body = email(rules, capped, "bridge.provider", states[0], states[1], clock.now())
    assert subject == "Provider res-1 asked for a Retry-After beyond the cap"
    assert "1 resource(s) back off on their own" in body


def channel(status: str, failures: int = 0) -> dict[str, Any]:
    return {"channel": "partner", "status": status, "consecutive_failures": failures,
            "last_error": "HTTP 503" if failures else None, "paused_until": None}  # fmt: skip


@pytest.mark.parametrize("status", ["paused", "disabled"])
def test_channel_unhealthy_when_paused_or_disabled(rules, status):
    assert ids(fire(rules, "bridge.channel", channel("ok"), channel(status, 5))) == ["channel-unhealthy"]
    assert fire(rules, "bridge.channel", channel("paused", 5), channel("probing", 5)) == []


def device_read(sim: PoderoSimulator, device: str, clock: ManualClock) -> dict[str, Any]:
    clock.advance(60)  # live readings wobble and stamps move on every read
    return sim.device(device)


def test_heat_pump_action_needed_and_steering_lost_after_its_hold(rules, podero, clock):
    sim, user, _ = podero
    hp = sim.add_heat_pump(user)
    idle = device_read(sim, hp, clock)
    assert fire(rules, "podero.heat_pump", idle, device_read(sim, hp, clock)) == []  # readings only
    sim.add_device_action(hp, "reauthenticate")
    needs = device_read(sim, hp, clock)
    [needed] = fire(rules, "podero.heat_pump", idle, needs)
    assert needed.rule.id == "heat-pump-action-needed"
    subject, body = email(rules, needed, "podero.heat_pump", idle, needs, clock.now())
    assert (subject, body.strip()) == ("Heat pump Altherma 3 needs action", "Pending actions: reauthenticate")

    sim.update_device(hp, steering_status="error")
    [lost] = fire(rules, "podero.heat_pump", needs, device_read(sim, hp, clock))
    assert lost.rule.id == "heat-pump-steering-lost"
    assert lost.rule.timing.for_s == 15 * 60


def test_heat_pump_link_lost_fires_resolves_and_flaps_after_more_than_six_changes(rules, podero, clock):
    sim, user, _ = podero
    hp = sim.add_heat_pump(user)
    ok = device_read(sim, hp, clock)
    sim.update_device(hp, connection_status="error")
    lost = device_read(sim, hp, clock)
    [fired] = fire(rules, "podero.heat_pump", ok, lost)
    assert fired.rule.id == "heat-pump-link-lost"
    assert fired.rule.active(lost)
    assert not fired.rule.active(ok)  # back to ok: `resolve = true` resolves it
    spec = fired.rule.flap
    assert spec is not None
    assert (spec.changes, spec.within, spec.settle) == (6, timedelta(minutes=10), timedelta(minutes=15))
    key = ResourceKey(source="podero.heat_pump", provider="podero", resource_id=hp)
    st, started = None, []
    for n in range(7):  # a link that drops and comes back every minute
        at = clock.now() + timedelta(minutes=n)
        step = flap.on_change(spec, rule_id=fired.rule.id, key=key, prior=st, old="ok", new="error", now=at)
        st, started = step.state, [*started, step.started]
    assert started == [False] * 6 + [True]  # more than six within ten minutes: flapping


def test_ev_charging_started_and_boost_stuck_while_requested(rules, podero, clock):
    sim, user, _ = podero
    ev = sim.add_electric_vehicle(user, is_plugged_in=True, boost_state="available")
    plugged = device_read(sim, ev, clock)
    sim.update_device(ev, boost_state="requested")
    requested = device_read(sim, ev, clock)
    sim.update_device(ev, boost_state="ongoing", is_charging=True, charge_rate_w=11000)
    ongoing = device_read(sim, ev, clock)

    [stuck] = fire(rules, "podero.electric_vehicle", plugged, requested)
    assert stuck.rule.id == "ev-boost-stuck"
    assert stuck.rule.timing.for_s == 15 * 60
    assert stuck.rule.active(requested)
    assert not stuck.rule.active(ongoing)  # the boost started: `resolve = true` resolves it
    assert ids(fire(rules, "podero.electric_vehicle", requested, ongoing)) == ["ev-charging-started"]


def test_inverter_battery_disconnected(rules, podero, clock):
    sim, user, _ = podero
    iv = sim.add_inverter(user)
    connected = device_read(sim, iv, clock)
    assert fire(rules, "podero.inverter", connected, device_read(sim, iv, clock)) == []  # production moves
    sim.update_device(iv, is_battery_connected=False)

    gone = device_read(sim, iv, clock)
    assert ids(fire(rules, "podero.inverter", connected, gone)) == ["inverter-battery-disconnected"]


ENTITY = "00000000-0000-4000-8000-0000000000f1"


def test_realto_commands_succeeded_failed_and_ended_unseen(rules, clock):
    sim = RealtoSimulator(clock=clock)
    ok, bad, quick = (
        sim.add_command(ENTITY, type=t) for t in ("StartCharging", "StopCharging", "LimitFeedIn")
    )
    pending_ok, pending_bad = sim.command(ok), sim.command(bad)
    while sim.advance_command(ok) != "Succeeded":
        pass
    sim.advance_command(bad)
    sim.fail_command(bad, "OemRejected", "The vehicle refused the command: not plugged in.")
    sim.cancel_command(quick)

    assert ids(fire(rules, "realto.command", pending_ok, sim.command(ok))) == ["realto-command-succeeded"]
    [failed] = fire(rules, "realto.command", pending_bad, sim.command(bad))
    assert failed.rule.id == "realto-command-failed"
    subject, body = email(rules, failed, "realto.command", pending_bad, sim.command(bad), clock.now())
    assert subject == "StopCharging failed: OemRejected"
    assert body.strip() == "The vehicle refused the command: not plugged in."
    # First seen already over (it ran its course between two polls of the entity's window):
    assert ids(fire(rules, "realto.command", None, sim.command(quick), kind="appeared")) == [
        "realto-command-ended-unseen"
    ]
    assert fire(rules, "realto.command", None, pending_ok, kind="appeared") == []


def test_every_example_rule_was_seen_firing(rules):
    # Runs last in this module: the scenarios above must cover every rule the examples ship.
    assert {r.id for r in rules.rules} <= FIRED
