"""The traces (#14) of one observed transition: one per rule that looked at it, or whose state it
moved, with each condition's check and what became of the rule (its trace note)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bridge.explain.checks import failed, transition_checks
from bridge.explain.notes import Notes
from bridge.model import Change, EventKind, Observation, Trace
from bridge.rules.engine import RuleSet, default_context


def observed_traces(
    obs: Observation,
    kind: EventKind,
    old: Mapping[str, object] | None,
    changes: Sequence[Change],
    rules: RuleSet,
    notes: Notes,
) -> tuple[Trace, ...]:
    """One trace per rule that looked at this transition, or whose state it moved (#14)."""
    looked = rules.candidates(source=obs.key.source, kind=kind, changes=changes)
    ids = [r.id for r in looked] + [rid for rid in notes.rules() if rid not in {r.id for r in looked}]
    if not ids:
        return ()
    ctx = default_context(old, obs.state, changes)
    traces = []
    for rule_id in ids:
        rule = rules.by_id.get(rule_id)
        if rule is None:
            continue
        relevant = tuple(c for c in changes if rule.watches(c.field))
        checks = transition_checks(rule, old, obs.state, ctx) if kind == "changed" else ()
        note = notes.get(rule_id)
        if note is not None:
            outcome, reasons, event_ids = note.outcome, note.reasons, note.event_ids
        elif all(c.ok for c in checks):
            outcome, reasons, event_ids = "no-match", ("matched, but nothing was due",), ()
        else:
            outcome, reasons, event_ids = "no-match", failed(checks), ()
        traces.append(
            Trace(
                rule_id=rule_id,
                key=obs.key,
                at=obs.observed_at,
                trigger=kind,
                changes=relevant or tuple(changes),
                checks=checks,
                outcome=outcome,
                reasons=reasons,
                event_ids=event_ids,
            )
        )
    return tuple(traces)
