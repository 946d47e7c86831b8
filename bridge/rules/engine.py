"""Rule evaluation: match changes against rules indexed by (source, field).

Cost grows with the rules that can match a change, not with all rules: each source keeps a dict from
the first path segment to the rules watching it, plus the few rules that watch no field.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from dataclasses import field as dataclass_field
from datetime import timedelta
from typing import Any

from bridge.config.windows import Schedule
from bridge.model import Change, EventKind, EventStatus
from bridge.poll.diff import get_path
from bridge.rules.flap import FlapSpec
from bridge.rules.state import Timing
from bridge.rules.templates import Expression, Template


def _head(path: str) -> str:
    """First segment of a path: `device_model.model` → `device_model`, `actions[x]` → `actions`."""
    return path.split(".", 1)[0].split("[", 1)[0]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _any_equal(value: Any, accepted: tuple[Any, ...]) -> bool:
    return any(_equal(value, v) for v in accepted)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """A rule's own email digest: its emails wait `wait`, grouped by `group_by`, then go as one."""

    group_by: tuple[str, ...]
    wait: timedelta
    interval: timedelta


@dataclass(frozen=True, slots=True, kw_only=True)
class Escalation:
    """One step of a rule's escalation chain (#14): unacknowledged `after` the firing, tell `channels`."""

    after: timedelta
    channels: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """A compiled rule (what `rules/*.toml` says, ready to evaluate)."""

    id: str
    description: str
    source: str
    field: str | None
    event: EventKind
    severity: str
    type: str
    channels: tuple[str, ...]
    file: str
    line: int | None
    from_: tuple[Any, ...] | None = None
    to: tuple[Any, ...] | None = None
    not_from: tuple[Any, ...] | None = None
    not_to: tuple[Any, ...] | None = None
    changed: bool = False
    above: float | None = None
    below: float | None = None
    hysteresis: float = 0.0
    condition: Expression | None = None
    for_: timedelta | None = None
    repeat: timedelta | None = None  # the first reminder's interval (`repeat_steps[0]`)
    repeat_max: int | None = None
    repeat_steps: tuple[timedelta, ...] = ()  # escalating reminders: then every last interval
    repeat_never: bool = False  # `repeat = "never"`: latch, one notification per firing
    cooldown: timedelta | None = None
    stale_after: timedelta | None = None  # a stale rule: `field` (a timestamp) or reads go quiet
    resolve: bool = False
    email_subject: Template | None = None
    email_body: Template | None = None
    email_html: Template | None = None
    mqtt_topic: Template | None = None
    digest: Digest | None = None
    schedule: Schedule | None = None  # `mute` / `active` windows (#14)
    inhibits: tuple[str, ...] = ()  # rule ids / globs this rule mutes while it fires (#14)
    inhibit_scope: str = "resource"  # "resource" or "provider"
    inhibits_line: int | None = None
    escalate: tuple[Escalation, ...] = ()  # the escalation chain (#14), `after` increasing
    flap: FlapSpec | None = None  # flap detection on `field` (#14, bridge/rules/flap.py)
    # `values_match` specialised to the conditions this rule has (set once, in __post_init__).
    _match: Callable[[Any, Any], bool] = dataclass_field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_match", _compile_match(self))

    @property
    def timing(self) -> Timing:
        return Timing(
            for_s=None if self.for_ is None else self.for_.total_seconds(),
            repeat_s=None if self.repeat is None else self.repeat.total_seconds(),
            repeat_max=self.repeat_max,
            repeat_steps=tuple(s.total_seconds() for s in self.repeat_steps),
            repeat_never=self.repeat_never,
            cooldown_s=None if self.cooldown is None else self.cooldown.total_seconds(),
            stale_s=None if self.stale_after is None else self.stale_after.total_seconds(),
            resolve=self.resolve,
            hysteresis=self.hysteresis > 0,
            escalate_s=tuple(e.after.total_seconds() for e in self.escalate),
        )

    @property
    def acknowledgeable(self) -> bool:
        """Its notifications carry acknowledge / snooze links: it repeats or escalates (#14)."""
        return bool(self.repeat_steps) or bool(self.escalate)

    def active(self, state: Mapping[str, Any] | None) -> bool:
        """Whether the rule's condition is true of one state alone: what holds, repeats and
        resolution watch. `to`/`not_to` on the current value, `above`/`below` widened by the
        hysteresis band (a firing rule re-arms only once the value is back past it), and `if`
        with `old` = `new` = `state`."""
        if state is None:
            return False
        if self.field is not None:
            value = get_path(state, self.field)
            if self.to is not None and not _any_equal(value, self.to):
                return False
            if self.not_to is not None and _any_equal(value, self.not_to):
                return False
            if self.above is not None:
                n = _number(value)
                if n is None or not n > self.above - self.hysteresis:
                    return False
            if self.below is not None:
                n = _number(value)
                if n is None or not n < self.below + self.hysteresis:
                    return False
        return self.condition is None or self.condition(default_context(state, state, ()))

    def watches(self, path: str) -> bool:
        """True when a change at `path` is at or under this rule's field."""
        f = self.field
        return f is None or path == f or path.startswith((f + ".", f + "["))

    def holds(
        self, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, context: dict[str, Any]
    ) -> bool:
        """Whether the transition old → new satisfies every condition of this rule."""
        if self.field is not None and not self.values_match(
            get_path(old, self.field), get_path(new, self.field)
        ):
            return False
        return self.condition is None or self.condition(context)

    def values_match(self, before: Any, after: Any) -> bool:
        """The field conditions (`from`/`to`/`not_*`/`above`/`below`) on the field's old and new value."""
        return self._match(before, after)

    def _values_match(self, before: Any, after: Any) -> bool:
        if self.to is not None and not _any_equal(after, self.to):
            return False
        if self.not_to is not None and _any_equal(after, self.not_to):
            return False
        if self.from_ is not None and not _any_equal(before, self.from_):
            return False
        if self.not_from is not None and _any_equal(before, self.not_from):
            return False
        if self.above is not None:
            b, a = _number(before), _number(after)
            if b is None or a is None or not (b <= self.above < a):
                return False
        if self.below is not None:
            b, a = _number(before), _number(after)
            if b is None or a is None or not (a < self.below <= b):
                return False
        return True


def _compile_match(rule: Rule) -> Callable[[Any, Any], bool]:
    """The common single-condition rules as one small closure (about 3x cheaper than walking every
    optional condition on the evaluation hot path); everything else falls back to the general check."""
    others = (rule.not_to, rule.from_, rule.not_from, rule.above, rule.below)
    if rule.to is not None and len(rule.to) == 1 and all(o is None for o in others):
        want = rule.to[0]
        if isinstance(want, bool):
            return lambda before, after: after is want  # bools are singletons; 1 is not True
        return lambda before, after: after == want and not isinstance(after, bool)
    if rule.to is None and all(o is None for o in others):
        return lambda before, after: True  # `changed = true`, or only an `if`
    if rule.above is not None and rule.to is None and all(o is None for o in others[:3] + others[4:]):
        threshold = rule.above
        return lambda before, after: _crosses_above(before, after, threshold)
    if rule.below is not None and rule.to is None and all(o is None for o in others[:4]):
        threshold = rule.below
        return lambda before, after: _crosses_above(after, before, threshold, strict_low=True)
    return rule._values_match


def _crosses_above(before: Any, after: Any, threshold: float, *, strict_low: bool = False) -> bool:
    """before <= threshold < after (or, for `below` with the arguments swapped, after < t <= before)."""
    b, a = _number(before), _number(after)
    if b is None or a is None:
        return False
    return (b < threshold <= a) if strict_low else (b <= threshold < a)


@dataclass(frozen=True, slots=True, kw_only=True)
class Firing:
    rule: Rule
    status: EventStatus
    changes: tuple[Change, ...]
    # #14: the firing this notification belongs to (None: it opens one, numbered by its event), the
    # channels when not the rule's (an escalation step, or a resolve after escalations), and the
    # escalation step it is (1-based; 0: not an escalation).
    firing_seq: int | None = None
    channels: tuple[str, ...] | None = None
    escalation: int = 0
    flap: dict[str, Any] | None = None  # a `wattbridge.flapping` notice of this rule (#14)


@dataclass(slots=True)
class _SourceIndex:
    """Rules of one (source, event kind), each list in rule order."""

    by_head: dict[str, list[Rule]] = field(default_factory=dict)
    fieldless: list[Rule] = field(default_factory=list)
    every: list[Rule] = field(default_factory=list)


class RuleSet:
    """An immutable, indexed set of rules."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = tuple(rules)
        self.by_id = {r.id: r for r in self.rules}
        self._order = {r.id: i for i, r in enumerate(self.rules)}
        self._index: dict[tuple[str, str], _SourceIndex] = {}
        self._keep: dict[str, frozenset[str]] = {}
        # Rules that remember something per resource (holds, repeats, cooldowns, resolution).
        self.timings = {r.id: r.timing for r in self.rules}
        self.stateful = frozenset(rid for rid, t in self.timings.items() if t.stateful)
        # Stale rules fire on silence, never on a change: timers only (bridge/rules/stale.py).
        self.stale = {r.id: r for r in self.rules if r.stale_after is not None}
        for rule in self.rules:
            if rule.stale_after is not None:
                continue
            idx = self._index.setdefault((rule.source, rule.event), _SourceIndex())
            idx.every.append(rule)
            if rule.field is None:
                idx.fieldless.append(rule)
            else:
                idx.by_head.setdefault(_head(rule.field), []).append(rule)
        # Flap detection (#14): by source, the rules that count their field's changes.
        self.flappers: dict[str, tuple[Rule, ...]] = {}
        for rule in self.rules:
            if rule.flap is not None:
                self.flappers[rule.source] = (*self.flappers.get(rule.source, ()), rule)
        # Inhibition (#14): target rule id → the rules that mute it while they fire.
        self.inhibitors: dict[str, tuple[Rule, ...]] = {}
        for target in self.rules:
            found = tuple(
                r
                for r in self.rules
                if r.id != target.id and any(fnmatch.fnmatchcase(target.id, p) for p in r.inhibits)
            )
            if found:
                self.inhibitors[target.id] = found
        for source in {r.source for r in self.rules}:
            # Full paths: a rule naming `owner.updated_at` keeps that field, not every `updated_at`.
            self._keep[source] = frozenset(
                r.field for r in self.rules if r.source == source and r.field is not None
            )

    def stale_rules(self, source: str) -> list[Rule]:
        """The stale rules of one source, in rule order."""
        return [r for r in self.stale.values() if r.source == source]

    def order(self, rule_id: str) -> int:
        return self._order.get(rule_id, len(self._order))

    def keep_fields(self, source: str) -> frozenset[str]:
        """Field paths rules of `source` watch: the diff keeps them even when they are volatile."""
        return self._keep.get(source, frozenset())

    def evaluate(
        self,
        *,
        source: str,
        kind: EventKind,
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
        changes: Sequence[Change],
        context: dict[str, Any] | None = None,
    ) -> list[Firing]:
        """The rules that fire for one resource's transition, in rule order."""
        idx = self._index.get((source, kind))
        if idx is None:
            return []
        if kind == "changed":
            if not changes:
                return []
            if len(changes) == 1:  # the common case: one field moved; its list is in rule order
                if not idx.fieldless:
                    return self._one_change(idx.by_head.get(_head(changes[0].field), ()), old, new, changes)
                candidates: Sequence[Rule] = sorted(
                    [*idx.by_head.get(_head(changes[0].field), ()), *idx.fieldless], key=self._rank
                )
            else:
                found: dict[str, Rule] = {}
                for head in {_head(c.field) for c in changes}:
                    for rule in idx.by_head.get(head, ()):
                        found[rule.id] = rule
                for rule in idx.fieldless:
                    found[rule.id] = rule
                candidates = sorted(found.values(), key=self._rank)
        else:
            candidates = idx.every
        if not candidates:
            return []
        ctx = context if context is not None else default_context(old, new, changes)
        firings = []
        for rule in candidates:
            relevant = tuple(c for c in changes if rule.watches(c.field))
            if kind == "changed" and rule.field is not None and not relevant:
                continue
            if rule.holds(old, new, ctx):
                firings.append(Firing(rule=rule, status="firing", changes=relevant or tuple(changes)))
        return firings

    def candidates(self, *, source: str, kind: EventKind, changes: Sequence[Change]) -> list[Rule]:
        """The rules that look at this transition (fired or not), in rule order: what a trace covers."""
        idx = self._index.get((source, kind))
        if idx is None:
            return []
        if kind != "changed":
            return list(idx.every)
        if not changes:
            return []
        found: dict[str, Rule] = {r.id: r for r in idx.fieldless}
        for head in {_head(c.field) for c in changes}:
            for rule in idx.by_head.get(head, ()):
                if any(rule.watches(c.field) for c in changes):
                    found[rule.id] = rule
        return sorted(found.values(), key=self._rank)

    def _one_change(
        self,
        candidates: Sequence[Rule],
        old: Mapping[str, Any] | None,
        new: Mapping[str, Any] | None,
        changes: Sequence[Change],
    ) -> list[Firing]:
        """One changed field and only field rules: the hot path of a poll. A rule on exactly the
        changed path reads the values from the change instead of walking both states; the template
        context is built only when a rule with an `if` gets that far."""
        [change] = changes
        path, before, after = change.field, change.old, change.new
        scalar = not isinstance(before, (dict, list)) and not isinstance(after, (dict, list))
        firings: list[Firing] = []
        ctx: dict[str, Any] | None = None
        single: tuple[Change, ...] | None = None
        for rule in candidates:
            f = rule.field
            if f == path and scalar:
                if not rule.values_match(before, after):
                    continue
            elif f is not None and rule.watches(path):
                if not rule.values_match(get_path(old, f), get_path(new, f)):
                    continue
            else:
                continue
            if rule.condition is not None:
                if ctx is None:
                    ctx = default_context(old, new, changes)
                if not rule.condition(ctx):
                    continue
            if single is None:
                single = (change,)
            firings.append(Firing(rule=rule, status="firing", changes=single))
        return firings

    def _rank(self, rule: Rule) -> int:
        return self._order[rule.id]

    def render_email(self, rule: Rule, *, context: dict[str, Any]) -> tuple[str, str]:
        """Subject and body of the rule's email (defaults when the rule has no [rule.email])."""
        event = context.get("event", {})
        subject = (
            rule.email_subject.render(context)
            if rule.email_subject is not None
            else f"[{rule.severity}] {rule.type}: {event.get('resource_id', '')}"
        )
        if rule.email_body is not None:
            body = rule.email_body.render(context)
        else:
            lines = [rule.description or rule.id, ""]
            lines += [
                f"{event.get('source', '')} {event.get('resource_id', '')} ({event.get('status', 'firing')})",
                "",
            ]
            lines += [f"  {c['field']}: {c['old']!r} -> {c['new']!r}" for c in context.get("changes", [])]
            body = "\n".join(lines) + "\n"
        return " ".join(subject.split()), body

    def render_email_html(self, rule: Rule, *, context: dict[str, Any]) -> str | None:
        """The optional HTML alternative of the rule's email (`[rule.email] html`)."""
        return rule.email_html.render(context) if rule.email_html is not None else None


def default_context(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, changes: Sequence[Change]
) -> dict[str, Any]:
    return {
        "old": old,
        "new": new,
        "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in changes],
        "event": {},
    }
