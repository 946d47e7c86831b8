"""What the evaluator tells about a state machine's decision: the `Firing` it notifies (#14: which
firing, which channels) and the trace notes of the ones that did not notify."""

from __future__ import annotations

from datetime import datetime

from bridge.explain.notes import Notes
from bridge.model import Change, RuleState
from bridge.rules.engine import Firing, Rule
from bridge.rules.state import Decision


def _iso(when: datetime | None) -> str:
    return "" if when is None else when.isoformat().replace("+00:00", "Z")


def note_observed(
    notes: Notes, rule_id: str, prior: RuleState | None, decision: Decision, *, triggered: bool
) -> None:
    """What the state machine decided for a stateful rule on a change, when it did not notify."""
    if decision.emit is not None:
        return  # the emit's note says it
    if decision.suppressed is not None:
        notes.stopped(rule_id, "cooldown", decision.suppressed)
    elif decision.state is not None and decision.state.phase == "pending":
        notes.stopped(
            rule_id, "hold", f"hold started: fires at {_iso(decision.state.due_at)} if it still holds"
        )
    elif decision.state is not None and prior is not None and prior.phase == "pending":
        notes.stopped(rule_id, "hold-broken", "stopped holding before `for` ended: nothing sent")
    elif decision.state is not None and prior is not None and prior.phase == "firing":
        notes.stopped(rule_id, "ended", "the condition stopped; the rule has no `resolve`: nothing sent")
    elif prior is not None and prior.phase == "pending":
        notes.stopped(rule_id, "hold", f"still holding: fires at {_iso(prior.due_at)} if it still holds")
    elif prior is not None and prior.phase == "firing" and triggered:
        notes.stopped(rule_id, "still-firing", "already firing: a re-trigger is not a new alert")


def firing_of(
    rule: Rule, prior: RuleState | None, decision: Decision, *, changes: tuple[Change, ...] | None = None
) -> Firing:
    """What a state machine's decision notifies: a new firing, a reminder or an escalation step of
    the prior one (its number and, for a step, its channels), or a resolve, which goes to every
    channel the firing reached (#14)."""
    status = decision.emit or "firing"
    seq = prior.firing_seq if prior is not None and prior.phase == "firing" else None
    channels: tuple[str, ...] | None = None
    if decision.escalation:
        channels = rule.escalate[decision.escalation - 1].channels
    elif status == "resolved" and prior is not None and prior.escalated:
        reached = [c for step in rule.escalate[: prior.escalated] for c in step.channels]
        channels = tuple(dict.fromkeys((*rule.channels, *reached)))
    return Firing(
        rule=rule,
        status=status,
        changes=prior.changes if changes is None and prior is not None else changes or (),
        firing_seq=seq if status == "firing" else None,
        channels=channels,
        escalation=decision.escalation,
    )


def note_due(notes: Notes, rule_id: str, prior: RuleState, decision: Decision) -> None:
    """What a timer (hold end, reminder, escalation) decided, when it did not notify."""
    if decision.paused is not None:
        notes.stopped(rule_id, "acknowledged" if prior.acked_at else "snoozed", decision.paused)
        return
    if decision.emit is not None:
        if decision.escalation:
            notes.detail(rule_id, f"escalation step {decision.escalation}: nobody acknowledged")
        elif decision.repeat:
            notes.detail(rule_id, f"reminder {decision.repeat}")
        elif prior.phase == "pending":
            notes.detail(rule_id, "the hold (`for`) ended with the condition still true")
        return
    if decision.suppressed is not None:
        notes.stopped(rule_id, "cooldown", decision.suppressed)
    elif decision.state is not None and decision.state.phase == "idle":
        notes.stopped(rule_id, "ended", "the condition no longer holds: nothing sent")
