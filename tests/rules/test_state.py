"""The rule state machine: holds (`for`), reminders (`repeat`, `repeat_max`), `cooldown`, `resolve`
and hysteresis, as pure decisions given `now` (no clock, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.model import Change, ResourceKey
from bridge.rules.engine import Rule
from bridge.rules.state import Decision, Timing, on_due, on_observation

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
KEY = ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1")
CHANGE = (Change(field="action_needed", old=False, new=True),)


def observe(t: Timing, prior, *, triggered: bool, active: bool, at: timedelta = timedelta()) -> Decision:
    return on_observation(
        t, rule_id="r", key=KEY, prior=prior, triggered=triggered, active=active, changes=CHANGE, now=T0 + at
    )


def test_a_hold_starts_pending_and_fires_when_due_with_the_triggering_changes():
    t = Timing(for_s=120)
    started = observe(t, None, triggered=True, active=True)
    assert started.emit is None
    assert started.state is not None
    assert started.state.phase == "pending"
    assert started.state.due_at == T0 + timedelta(minutes=2)

    early = on_due(t, prior=started.state, active=True, now=T0 + timedelta(seconds=119))
    assert early == Decision()
    fired = on_due(t, prior=started.state, active=True, now=T0 + timedelta(minutes=2))
    assert fired.emit == "firing"
    assert fired.state is not None
    assert fired.state.phase == "firing"
    assert fired.state.changes == CHANGE


def test_a_hold_is_cancelled_silently_when_the_condition_stops():
    t = Timing(for_s=120)
    started = observe(t, None, triggered=True, active=True).state
    broken = observe(t, started, triggered=False, active=False, at=timedelta(seconds=30))
    assert broken.emit is None
    assert broken.state is not None
    assert broken.state.phase == "idle"
    assert broken.state.forgettable


def test_a_latched_rule_does_not_fire_again_on_a_retrigger_while_it_holds():
    t = Timing(resolve=True)
    fired = observe(t, None, triggered=True, active=True)
    assert fired.emit == "firing"
    again = observe(t, fired.state, triggered=True, active=True, at=timedelta(minutes=1))
    assert again == Decision()


def test_resolve_notifies_once_when_the_condition_stops_and_a_plain_latch_does_not():
    for resolve, expected in ((True, "resolved"), (False, None)):
        t = Timing(resolve=resolve, repeat_s=3600)
        fired = observe(t, None, triggered=True, active=True).state
        stopped = observe(t, fired, triggered=False, active=False, at=timedelta(minutes=5))
        assert stopped.emit == expected
        assert stopped.state is not None
        assert stopped.state.phase == "idle"


def test_repeat_reminds_every_interval_and_stops_after_repeat_max():
    t = Timing(repeat_s=3600, repeat_max=2)
    state = observe(t, None, triggered=True, active=True).state
    assert state is not None
    reminders = []
    for hour in (1, 2, 3):
        d = on_due(t, prior=state, active=True, now=T0 + timedelta(hours=hour))
        reminders.append((d.emit, d.repeat))
        state = d.state or state
    assert reminders == [("firing", 1), ("firing", 2), (None, 0)]
    assert state.due_at is None


def test_cooldown_suppresses_a_second_firing_within_the_window_and_allows_it_after():
    t = Timing(cooldown_s=600)
    first = observe(t, None, triggered=True, active=True)
    assert first.emit == "firing"
    assert first.state is not None
    assert first.state.phase == "idle"
    assert first.state.last_fired_at == T0

    within = observe(t, first.state, triggered=True, active=True, at=timedelta(minutes=5))
    assert within.emit is None
    assert within.suppressed is not None
    assert "cooldown" in within.suppressed
    after = observe(t, within.state, triggered=True, active=True, at=timedelta(minutes=11))
    assert after.emit == "firing"


def test_a_rule_without_timing_keywords_remembers_nothing():
    t = Timing()
    assert not t.stateful
    fired = observe(t, None, triggered=True, active=True)
    assert fired.emit == "firing"
    assert fired.state is not None
    assert fired.state.forgettable


def rule(**kw) -> Rule:
    base = {
        "id": "power-high",
        "description": "",
        "source": "podero.wallbox",
        "field": "charge_rate_w",
        "event": "changed",
        "severity": "info",
        "type": "t",
        "channels": ("ops",),
        "file": "f.toml",
        "line": 1,
    }
    return Rule(**(base | kw))


def test_hysteresis_keeps_an_above_rule_active_until_the_value_leaves_the_band():
    r = rule(above=7000.0, hysteresis=500.0)
    assert r.timing.latches
    assert r.holds({"charge_rate_w": 6900}, {"charge_rate_w": 7100}, {})  # the crossing triggers
    assert r.active({"charge_rate_w": 6600})  # back under 7000 but inside the band: still firing
    assert not r.active({"charge_rate_w": 6400})  # past the band: re-armed


def test_hysteresis_below_mirrors_above():
    r = rule(below=1000.0, hysteresis=200.0)
    assert r.holds({"charge_rate_w": 1500}, {"charge_rate_w": 900}, {})
    assert r.active({"charge_rate_w": 1100})
    assert not r.active({"charge_rate_w": 1300})


def test_active_checks_to_and_not_to_on_the_current_value_only():
    r = rule(field="status", to=("FAILED", "EXPIRED"))
    assert r.active({"status": "FAILED"})
    assert not r.active({"status": "COMPLETED"})
    assert not r.active(None)
    n = rule(field="status", not_to=("COMPLETED",))
    assert n.active({"status": "PENDING"})
    assert not n.active({"status": "COMPLETED"})
