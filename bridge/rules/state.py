"""Durable per-(rule, resource) state: holds (`for`), repeats, cooldowns, resolution and hysteresis.

Pure functions of (rule, stored state, what was observed, now): no I/O, no clock. The poller stores
the returned `RuleState` in the same transaction as the events it caused, so a restart or a rules
reload neither resets a running hold nor fires it twice.

A rule's *trigger* is a transition (`Rule.holds(old, new)`); its *condition* is a property of the
current state alone (`Rule.active(state)`): `to` still matches, `not_to` still does not, the value is
still beyond `above`/`below` (minus the hysteresis band), and `if` (evaluated with `old` = `new` =
the current state) is still true. Holds and repeats continue while the condition is true.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from bridge.model import Change, ResourceKey, RuleState

Emit = Literal["firing", "resolved"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """The new state (None: unchanged) and what to notify (None: nothing)."""

    state: RuleState | None = None
    emit: Emit | None = None
    suppressed: str | None = None  # why a firing was not sent (cooldown)
    repeat: int = 0  # >0: this firing is the n-th reminder
    escalation: int = 0  # >0: this firing is escalation step n (its channels, not the rule's; #14)
    paused: str | None = None  # why a due reminder or escalation waits (acknowledged, snoozed; #14)

    @property
    def changed(self) -> bool:
        return self.state is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """The timing keywords of a rule: the only part of a rule this module needs."""

    for_s: float | None = None
    repeat_s: float | None = None
    repeat_max: int | None = None
    cooldown_s: float | None = None
    resolve: bool = False
    hysteresis: bool = False
    repeat_steps: tuple[float, ...] = ()  # escalating reminder intervals (`repeat_s` is the first)
    repeat_never: bool = False
    stale_s: float | None = None  # a stale rule (bridge/rules/stale.py)
    escalate_s: tuple[float, ...] = ()  # escalation steps' `after`, from the firing (#14)

    @property
    def latches(self) -> bool:
        """Remembers it is firing until the condition stops (no re-fire on a re-trigger meanwhile)."""
        return (
            self.for_s is not None
            or self.repeat_s is not None
            or self.resolve
            or self.hysteresis
            or self.repeat_never
            or self.stale_s is not None
        )

    def repeat_after(self, sent: int) -> float | None:
        """Seconds from the reminder number `sent` (0: the first notification) to the next one:
        `repeat = ["15m", "30m", "1h"]` waits 15m, 30m, then 1h each time after."""
        if self.repeat_steps:
            return self.repeat_steps[min(sent, len(self.repeat_steps) - 1)]
        return self.repeat_s

    @property
    def stateful(self) -> bool:
        return self.latches or self.cooldown_s is not None


def _plus(when: datetime, seconds: float | None) -> datetime | None:
    return None if seconds is None else when + timedelta(seconds=seconds)


def fire(t: Timing, prior: RuleState, now: datetime) -> Decision:
    """Fire now from a pending or idle state (cooldown allowing): what stale rules share."""
    return _fire(t, prior, now)


def _fire(t: Timing, prior: RuleState, now: datetime) -> Decision:
    """Fire now (from `prior`, a pending or idle state) unless a cooldown forbids it."""
    last = prior.last_fired_at
    if t.cooldown_s is not None and last is not None:
        until = _plus(last, t.cooldown_s)
        if until is not None and now < until:
            return Decision(state=_idle(prior), suppressed=f"cooldown until {until.isoformat()}")
    fired_at = now if t.cooldown_s is not None else None
    if not t.latches:
        return Decision(state=replace(_idle(prior), last_fired_at=fired_at), emit="firing")
    state = replace(
        prior,
        phase="firing",
        due_at=_plus(now, t.repeat_after(0)) if t.repeat_max != 0 else None,
        repeats=0,
        last_fired_at=fired_at,
        # A new firing: no acknowledgement yet, its escalation chain starts (#14).
        firing_seq=None,
        escalated=0,
        escalate_at=_plus(now, t.escalate_s[0]) if t.escalate_s else None,
        acked_by=None,
        acked_at=None,
        snoozed_until=None,
        snoozed_by=None,
    )
    return Decision(state=state, emit="firing")


def on_observation(
    t: Timing,
    *,
    rule_id: str,
    key: ResourceKey,
    prior: RuleState | None,
    triggered: bool,
    active: bool,
    changes: tuple[Change, ...],
    now: datetime,
) -> Decision:
    """A poll saw this resource change. `triggered`: the rule's transition matched; `active`: its
    condition is true of the new state."""
    if prior is not None and prior.phase == "pending":
        return Decision() if active else Decision(state=_idle(prior))  # hold broken: nothing sent
    if prior is not None and prior.phase == "firing":
        if active:
            return Decision()  # still firing: a re-trigger is not a new alert
        return Decision(state=_idle(prior), emit="resolved" if t.resolve else None)
    if not triggered:
        return Decision()
    start = RuleState(
        rule_id=rule_id,
        key=key,
        phase="pending",
        since=now,
        due_at=_plus(now, t.for_s),
        last_fired_at=prior.last_fired_at if prior is not None else None,
        changes=changes,
    )
    if t.for_s is not None:
        return Decision(state=start)
    return _fire(t, start, now)


def on_due(t: Timing, *, prior: RuleState, active: bool, now: datetime) -> Decision:
    """The state's `due_at` has come: end a hold (fire) or send a reminder."""
    if prior.due_at is None or now < prior.due_at:
        return Decision()
    if not active:  # a change would have cancelled it already; resolve the same way if not
        emit: Emit | None = "resolved" if prior.phase == "firing" and t.resolve else None
        return Decision(state=_idle(prior), emit=emit)
    if prior.phase == "pending":
        return _fire(t, prior, now)
    if prior.phase == "firing" and t.repeat_s is not None:
        n = prior.repeats + 1
        more = t.repeat_max is None or n < t.repeat_max
        nxt = replace(prior, repeats=n, due_at=_plus(now, t.repeat_after(n)) if more else None)
        return Decision(state=nxt, emit="firing", repeat=n)
    return Decision(state=replace(prior, due_at=None))


def _idle(prior: RuleState) -> RuleState:
    return RuleState(
        rule_id=prior.rule_id,
        key=prior.key,
        phase="idle",
        since=prior.since,
        last_fired_at=prior.last_fired_at,
    )


def unfired(prior: RuleState) -> RuleState:
    """`prior` without what belongs to a firing (its number, escalation, acknowledgement, snooze)."""
    return replace(
        prior,
        firing_seq=None,
        escalated=0,
        escalate_at=None,
        acked_by=None,
        acked_at=None,
        snoozed_until=None,
        snoozed_by=None,
    )
