"""Flap detection in the evaluator (#14): the mirror of committed `FlapState`s, and what one
observation or timer does with them. The decisions are `bridge/rules/flap.py`'s; this module
gathers them per poll result (`FlapPass`) so the evaluator only asks two questions: which flapping
notices to send, and why a notification of a flapping resource is held back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from bridge.model import Change, FlapState, ResourceKey
from bridge.poll.diff import get_path
from bridge.poll.due_index import DueIndex
from bridge.rules import flap
from bridge.rules.engine import Firing, Rule, RuleSet


class FlapPass:
    """The flap states one poll result moves, and the notices it sends."""

    def __init__(self, rules: RuleSet, known: Mapping[tuple[str, ResourceKey], FlapState], key: ResourceKey):
        self._rules = rules
        self._known = known
        self._key = key
        self.moved: dict[str, FlapState] = {}
        self.notices: list[Firing] = []

    def state(self, rule_id: str) -> FlapState | None:
        return self.moved.get(rule_id) or self._known.get((rule_id, self._key))

    def held_back(self, firing: Firing) -> str | None:
        """Why this firing of the rule is held back (its resource flaps), or None: it goes out."""
        if firing.flap is not None:
            return None  # the flapping notice itself
        st = self.state(firing.rule.id)
        spec = firing.rule.flap
        if st is None or not st.flapping or spec is None:
            return None
        return flap.reason(st, spec, firing.rule.field or "")

    def muted(self, rule_id: str) -> None:
        st = self.state(rule_id)
        if st is not None:
            self.moved[rule_id] = flap.muted_one(st)
            # The notice of this same result is rendered after the firings it follows: its summary
            # counts what this result held back too (the 7th change's own notification).
            for notice in self.notices:
                if notice.rule.id == rule_id and notice.flap is not None:
                    notice.flap["muted"] = self.moved[rule_id].muted

    @property
    def states(self) -> tuple[FlapState, ...]:
        return tuple(self.moved.values())


class FlapBook:
    """Every committed flap state (counting or flapping) by (rule, resource)."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, ResourceKey], FlapState] = {}
        self._due: DueIndex[tuple[str, ResourceKey]] = DueIndex(self._due_at)

    def _due_at(self, k: tuple[str, ResourceKey]) -> datetime | None:
        st = self._states.get(k)
        return st.due_at if st is not None else None

    def remember(self, states: Iterable[FlapState]) -> None:
        for st in states:
            k = (st.rule_id, st.key)
            if st.forgettable:
                self._states.pop(k, None)
            else:
                prior = self._states.get(k)
                self._states[k] = st
                if prior is None or prior.due_at != st.due_at:  # else it is indexed already
                    self._due.push(k, st.due_at)

    def forget(self, keys: Iterable[tuple[str, ResourceKey]]) -> None:
        """Stop mirroring these states: their rows were deleted (by another replica)."""
        for k in keys:
            self._states.pop(k, None)  # its heap entry, if any, is dropped when it reaches the top

    def replace_all(self, states: Iterable[FlapState]) -> None:
        self._states.clear()
        self._due.rebuild(())
        self.remember(states)

    @property
    def states(self) -> list[FlapState]:
        return list(self._states.values())

    def flapping(self) -> list[FlapState]:
        return [st for st in self._states.values() if st.flapping]

    def next_due(self) -> datetime | None:
        return self._due.earliest(len(self._states))

    def due_now(self, now: datetime, limit: int | None = None) -> dict[ResourceKey, list[FlapState]]:
        """What is due now (the earliest `limit` timers, when given), by resource."""
        due: dict[ResourceKey, list[FlapState]] = defaultdict(list)
        for k in self._due.due(now, limit):
            due[k[1]].append(self._states[k])
        return due

    def due_of(self, rules: RuleSet, key: ResourceKey, now: datetime) -> list[FlapState]:
        """The flap states of one resource due now, of the rules that still have `flap`."""
        found = (self._states.get((r.id, key)) for r in rules.flappers.get(key.source, ()))
        return [st for st in found if st is not None and st.due_at is not None and st.due_at <= now]

    def empty_pass(self, rules: RuleSet, key: ResourceKey) -> FlapPass:
        return FlapPass(rules, self._states, key)

    def observe(
        self,
        rules: RuleSet,
        key: ResourceKey,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
        changes: Sequence[Change],
        now: datetime,
    ) -> FlapPass:
        """Count this change for every flap rule of the source whose field it touches."""
        out = self.empty_pass(rules, key)
        for rule in rules.flappers.get(key.source, ()):
            spec, field = rule.flap, rule.field
            if spec is None or field is None or not any(rule.watches(c.field) for c in changes):
                continue
            step = flap.on_change(
                spec,
                rule_id=rule.id,
                key=key,
                prior=self._states.get((rule.id, key)),
                old=get_path(old, field),
                new=get_path(new, field),
                now=now,
            )
            out.moved[rule.id] = step.state
            if step.started:
                out.notices.append(_notice(rule, step.state, new, now, settled_now=False))
        return out

    def settle(
        self,
        rules: RuleSet,
        key: ResourceKey,
        due: Sequence[FlapState],
        state: Mapping[str, Any] | None,
        now: datetime,
    ) -> FlapPass:
        """Flapping states whose `settle` passed without a change: one settled notice each."""
        out = self.empty_pass(rules, key)
        for st in due:
            rule = rules.by_id.get(st.rule_id)
            out.moved[st.rule_id] = flap.settled(st)
            if rule is not None and st.flapping:
                out.notices.append(_notice(rule, st, state, now, settled_now=True))
        return out


def _notice(
    rule: Rule, st: FlapState, state: Mapping[str, Any] | None, now: datetime, *, settled_now: bool
) -> Firing:
    spec, field = rule.flap, rule.field or ""
    if spec is None:  # only flap rules get here
        raise ValueError(f"rule {rule.id!r} has no `flap`")
    summary = flap.summary(spec, st, field=field, now=now, settled_now=settled_now, active=rule.active(state))
    return Firing(
        rule=rule,
        status="resolved" if settled_now else "firing",
        changes=(Change(field=field, old=st.first, new=st.last),),
        flap=summary,
    )


def expired(book: FlapBook, rules: RuleSet, now: datetime) -> list[FlapState]:
    """Counting states whose window passed (and states of rules a reload removed): to forget, with
    no notice and no snapshot write."""
    out = []
    for states in book.due_now(now).values():
        for st in states:
            rule = rules.by_id.get(st.rule_id)
            if not st.flapping or rule is None or rule.flap is None:
                out.append(flap.settled(st))
    return out
