"""What became of each rule during one evaluation, collected while the evaluator decides: the
`outcome`, `reasons` and `event_ids` of its trace (#14)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge.rules.engine import Firing

# Delivery fates, best first: a trace's outcome is the best fate any of its deliveries had.
FATES = ("queued", "digest", "deferred", "flapping", "inhibited", "silenced")


@dataclass(slots=True)
class Note:
    outcome: str
    reasons: list[str] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


class Notes:
    """Notes by rule id, in the order rules were decided."""

    def __init__(self) -> None:
        self._notes: dict[str, Note] = {}
        self._details: dict[str, list[str]] = {}

    def rules(self) -> list[str]:
        return list(self._notes)

    def get(self, rule_id: str) -> _Frozen | None:
        note = self._notes.get(rule_id)
        if note is None:
            return None
        return _Frozen(note.outcome, tuple(note.reasons), tuple(note.event_ids))

    def stopped(self, rule_id: str, outcome: str, reason: str) -> None:
        """The rule matched (or was holding) but nothing was notified, and why."""
        self._notes[rule_id] = Note(outcome=outcome, reasons=[*self._details.pop(rule_id, []), reason])

    def detail(self, rule_id: str, text: str) -> None:
        """Context for the rule's next note (a hold that ended, a reminder's number)."""
        self._details.setdefault(rule_id, []).append(text)

    def emitted(self, firing: Firing, event_id: str, deliveries: Sequence[tuple[str, str, str]]) -> None:
        """An event went out: its deliveries' (channel, fate, reason), fate one of FATES."""
        rule_id = firing.rule.id
        note = self._notes.get(rule_id)
        if note is None:
            note = self._notes[rule_id] = Note(outcome="", reasons=self._details.pop(rule_id, []))
        note.event_ids.append(event_id)
        note.reasons.append(f"{firing.status} event {event_id}")
        note.reasons += [f"{channel}: {reason}" for channel, _, reason in deliveries]
        fates = [fate for _, fate, _ in deliveries]
        best = min(fates, key=FATES.index) if fates else "no-delivery"
        if not fates:
            note.reasons.append("no channel takes this event type")
        prior = note.outcome
        note.outcome = best if not prior else min(prior, best, key=_rank)
        if firing.status == "resolved" and note.outcome == "queued":
            note.outcome = "resolved"
        elif note.outcome == "queued":
            note.outcome = "sent"

    def flapped(self, firing: Firing) -> None:
        """A flapping (or settled) notice went out (#14): that is the rule's outcome on this resource,
        whatever its own firing did."""
        note = self._notes.get(firing.rule.id)
        f = firing.flap
        if note is None or f is None:
            return
        if firing.status == "firing":
            note.outcome = "flapping"
            note.reasons.append(
                f"flapping: {f['field']} changed {f['changes']} times within {f['within']} (more than "
                f"{f['threshold']}): one flapping notice; the rule's notifications are held back until "
                f"it has not changed for {f['settle']}"
            )
        else:
            note.outcome = "settled"
            note.reasons.append(
                f"settled: {f['field']} unchanged for {f['settle']} after {f['changes']} changes; "
                f"{f['muted']} notification(s) were held back"
            )


def _rank(outcome: str) -> int:
    return FATES.index(outcome) if outcome in FATES else -1


@dataclass(frozen=True, slots=True)
class _Frozen:
    outcome: str
    reasons: tuple[str, ...]
    event_ids: tuple[str, ...]
