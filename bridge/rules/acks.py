"""Acknowledge, snooze and escalate a firing (#14): pure functions of (timing, stored state, now).

An acknowledgement stops a firing's reminders and its escalation chain until it resolves (a new
firing starts clean: `state.unfired`); a snooze pauses both until it ends, then they resume where
they were due. Escalation step n is due `escalate[n].after` from the firing and goes to that step's
channels, unless someone acknowledged first. Like every timer these are columns of the rule state,
so a restart neither loses nor repeats them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.model import RuleState
from bridge.rules.state import Decision, Timing


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _later(when: datetime | None, floor: datetime) -> datetime | None:
    return None if when is None else max(when, floor)


def acknowledge(prior: RuleState, *, by: str, now: datetime) -> RuleState:
    """Someone owns this firing: no more reminders, no escalation, until it resolves."""
    return replace(
        prior,
        acked_by=by,
        acked_at=now,
        due_at=None,
        escalate_at=None,
        snoozed_until=None,
        snoozed_by=None,
    )


def snooze(prior: RuleState, *, by: str, until: datetime) -> RuleState:
    """Pause this firing's reminders and escalation until `until`; then they go on."""
    return replace(
        prior,
        snoozed_until=until,
        snoozed_by=by,
        due_at=_later(prior.due_at, until),
        escalate_at=_later(prior.escalate_at, until),
    )


def paused_why(st: RuleState, now: datetime) -> str | None:
    """Why this firing's reminders and escalation do not go out now (None: they do)."""
    if st.acked_at is not None:
        return f"acknowledged by {st.acked_by} at {_iso(st.acked_at)}"
    if st.snoozed_until is not None and now < st.snoozed_until:
        return f"snoozed by {st.snoozed_by} until {_iso(st.snoozed_until)}"
    return None


def on_timer(
    t: Timing,
    *,
    prior: RuleState,
    active: bool,
    now: datetime,
    inner: Callable[[RuleState], Decision],
) -> Decision:
    """A rule state's timer came due: escalate, or pause (acknowledged, snoozed), else `inner` (the
    hold / reminder / stale timer). A condition that stopped holding resolves as before."""
    if prior.phase != "firing":
        return inner(prior)
    if not active:  # stopped holding (a poll would have seen it first): resolve as a reminder would
        return inner(replace(prior, due_at=now))
    escalation_due = prior.escalate_at is not None and prior.escalate_at <= now
    reminder_due = prior.due_at is not None and prior.due_at <= now
    if not (escalation_due or reminder_due):
        return inner(prior)  # (a stale rule's read is looked at even when nothing is due)
    why = paused_why(prior, now)
    if prior.acked_at is not None:  # an older row, or a race: nothing more for this firing
        return Decision(state=replace(prior, due_at=None, escalate_at=None), paused=why)
    if why is not None and prior.snoozed_until is not None:
        until = prior.snoozed_until
        moved = replace(
            prior, due_at=_later(prior.due_at, until), escalate_at=_later(prior.escalate_at, until)
        )
        return Decision(state=moved, paused=why)
    if escalation_due and prior.escalate_at is not None:
        n = prior.escalated + 1
        if n > len(t.escalate_s):  # a reload shortened the chain
            return Decision(state=replace(prior, escalate_at=None))
        nxt = None
        if n < len(t.escalate_s):
            nxt = prior.escalate_at + timedelta(seconds=t.escalate_s[n] - t.escalate_s[n - 1])
        return Decision(state=replace(prior, escalated=n, escalate_at=nxt), emit="firing", escalation=n)
    return inner(prior)
