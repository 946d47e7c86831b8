"""The acknowledge / snooze / escalation state machine (#14), as pure functions on the clock."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.model import ResourceKey, RuleState
from bridge.rules import acks
from bridge.rules.state import Decision, Timing, on_due, on_observation

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
KEY = ResourceKey(provider="podero", source="podero.wallbox", resource_id="wb-1")
T = Timing(repeat_s=900.0, repeat_steps=(900.0,), resolve=True, escalate_s=(1800.0, 3600.0))


def fired() -> RuleState:
    d = on_observation(T, rule_id="r", key=KEY, prior=None, triggered=True, active=True, changes=(), now=T0)
    assert d.state is not None
    return d.state


def due(st: RuleState, minutes: int, *, active: bool = True) -> Decision:
    now = T0 + timedelta(minutes=minutes)
    return acks.on_timer(
        T, prior=st, active=active, now=now, inner=lambda p: on_due(T, prior=p, active=active, now=now)
    )


def test_a_firing_arms_its_first_escalation_step_and_a_new_firing_starts_clean():
    st = fired()
    assert (st.escalate_at, st.escalated, st.acked_at) == (T0 + timedelta(minutes=30), 0, None)
    d = on_observation(
        T, rule_id="r", key=KEY, prior=replace(st, phase="idle", acked_by="ada", acked_at=T0),
        triggered=True, active=True, changes=(), now=T0 + timedelta(hours=3),
    )  # fmt: skip
    assert d.state is not None
    assert (d.state.acked_by, d.state.escalated) == (None, 0)


def test_escalation_steps_go_out_at_their_after_and_then_stop():
    st = fired()
    one = due(st, 30)
    assert (one.emit, one.escalation) == ("firing", 1)
    assert one.state is not None
    assert one.state.escalate_at == T0 + timedelta(hours=1)
    two = due(one.state, 60)
    assert (two.emit, two.escalation) == ("firing", 2)
    assert two.state is not None
    assert two.state.escalate_at is None


def test_an_ack_stops_reminders_and_escalation_and_a_resolve_still_goes_out():
    st = acks.acknowledge(fired(), by="ada", now=T0 + timedelta(minutes=5))
    assert (st.due_at, st.escalate_at, st.next_due) == (None, None, None)
    gone = due(st, 90, active=False)
    assert gone.emit == "resolved"
    assert gone.state is not None
    assert (gone.state.phase, gone.state.acked_by) == ("idle", None)


def test_a_snooze_moves_what_is_due_to_its_end_and_then_it_resumes():
    st = acks.snooze(fired(), by="bo", until=T0 + timedelta(minutes=50))
    assert st.due_at == st.escalate_at == T0 + timedelta(minutes=50)
    assert acks.paused_why(st, T0 + timedelta(minutes=10)) == "snoozed by bo until 2026-11-22T21:50:00Z"
    first = due(st, 50)
    assert (first.emit, first.escalation) == ("firing", 1)  # the overdue escalation first
    assert first.state is not None
    second = due(first.state, 50)
    assert (second.emit, second.repeat) == ("firing", 1)  # then the reminder
    assert acks.paused_why(st, T0 + timedelta(minutes=50)) is None
