"""From an observation and its stored snapshot to the poll result to commit: baseline, diff, rules,
the rule-state machine, the events and their deliveries. No I/O: the cycle reads and commits.

`Evaluator` also mirrors the committed rule states (running holds, firings, cooldowns), because the
state machine needs a resource's open rules on every observation; the store stays the truth.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

import structlog

from bridge.channels.base import Channel
from bridge.model import (
    Change,
    Delivery,
    Event,
    EventKind,
    Observation,
    PollResult,
    ResourceKey,
    RuleState,
    Silence,
    Snapshot,
    Watch,
)
from bridge.notify.render import Notifier
from bridge.poll.diff import diff, meaningful_digest
from bridge.rules.engine import Firing, RuleSet
from bridge.rules.state import on_due, on_observation

log = structlog.get_logger(__name__)


class Evaluator:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        digest_groups: Mapping[str, tuple[str, ...]],
        event_types: Mapping[str, Callable[[str], bool]] | None = None,
    ) -> None:
        self._states: dict[tuple[str, ResourceKey], RuleState] = {}
        self._open: dict[ResourceKey, set[str]] = defaultdict(set)  # pending or firing, by resource
        self._notify = Notifier(channels, digest_groups=digest_groups, event_types=event_types)

    def set_silences(self, silences: Sequence[Silence]) -> None:
        self._notify.silences = list(silences)

    def remember(self, states: Iterable[RuleState]) -> None:
        """Mirror rule states that were committed (or loaded at start)."""
        for st in states:
            k = (st.rule_id, st.key)
            if st.forgettable:
                self._states.pop(k, None)
            else:
                self._states[k] = st
            if st.phase == "idle":
                self._open[st.key].discard(st.rule_id)
                if not self._open[st.key]:
                    del self._open[st.key]
            else:
                self._open[st.key].add(st.rule_id)

    def replace_all(self, states: Iterable[RuleState]) -> None:
        """Mirror exactly these states (read back from a store other replicas write too)."""
        self._states.clear()
        self._open.clear()
        self.remember(states)

    @property
    def states(self) -> list[RuleState]:
        return list(self._states.values())

    def next_due(self) -> datetime | None:
        """When the earliest hold ends or reminder is due (None: no timer running)."""
        return min((s.due_at for s in self._states.values() if s.due_at is not None), default=None)

    def due_now(self, now: datetime) -> dict[ResourceKey, list[RuleState]]:
        due: dict[ResourceKey, list[RuleState]] = defaultdict(list)
        for st in self._states.values():
            if st.due_at is not None and st.due_at <= now:
                due[st.key].append(st)
        return due

    def observe(
        self,
        obs: Observation,
        snapshot: Snapshot | None,
        rules: RuleSet,
        *,
        appears: bool = False,
        end_watch: str | None = None,
        digest: str | None = None,
        start_watch: Watch | None = None,
    ) -> PollResult | None:
        """What one observation changes; None when there is nothing to write."""
        source = obs.key.source
        keep = rules.keep_fields(source)
        if digest is None:
            digest = meaningful_digest(obs.state, source=source, keep=keep)
        if snapshot is None and not appears:
            if obs.state is None and end_watch is None:
                return None  # never seen and not there: nothing to baseline
            # (a by-id watch on something that is not there still ends: its "gone" row is stored)
            # The first observation is the baseline: stored, fires nothing.
            return PollResult(
                snapshot=_snapshot(obs, digest, 0), end_watch=end_watch, start_watch=start_watch
            )
        if snapshot is None:
            # New in a listing that was already baselined: it appeared.
            snapshot = Snapshot(
                key=obs.key, state=None, digest="gone", sequence=0, updated_at=obs.observed_at, version=0
            )
        if snapshot.digest == digest:
            if end_watch is not None:  # terminal and unchanged: still end the watch
                return PollResult(
                    snapshot=snapshot.next_write(), end_watch=end_watch, start_watch=start_watch
                )
            return None  # only volatile fields moved: write nothing
        kind: EventKind
        if obs.state is None:
            kind = "disappeared"
        elif snapshot.state is None:
            kind = "appeared"
        else:
            kind = "changed"
        changes = diff(snapshot.state, obs.state, source=source, keep=keep)
        firings = rules.evaluate(source=source, kind=kind, old=snapshot.state, new=obs.state, changes=changes)
        moved: list[RuleState] = []
        if rules.stateful and (obs.key in self._open or any(f.rule.id in rules.stateful for f in firings)):
            firings, moved = self._through_state(obs, firings, changes, rules)
        events, deliveries, sequence = self._emit(obs, firings, snapshot, rules)
        return PollResult(
            snapshot=_snapshot(obs, digest, sequence, version=snapshot.version + 1),
            events=events,
            deliveries=deliveries,
            end_watch=end_watch,
            start_watch=start_watch,
            rule_states=tuple(moved),
        )

    def due(
        self,
        key: ResourceKey,
        snapshot: Snapshot | None,
        states: Sequence[RuleState],
        rules: RuleSet,
        now: datetime,
    ) -> PollResult | None:
        """Holds that end and reminders that are due now, against the resource's stored state."""
        if snapshot is None:  # never stored (cannot happen after a commit): nothing to notify about
            self.remember(replace(st, phase="idle", last_fired_at=None) for st in states)
            return None
        obs = Observation(key=key, state=snapshot.state, observed_at=now)
        firings: list[Firing] = []
        moved: list[RuleState] = []
        for st in sorted(states, key=lambda s: rules.order(s.rule_id)):
            rule = rules.by_id.get(st.rule_id)
            if rule is None:  # the rule was removed by a reload: forget its timers
                moved.append(replace(st, phase="idle", last_fired_at=None))
                continue
            decision = on_due(rules.timings[rule.id], prior=st, active=rule.active(snapshot.state), now=now)
            if decision.state is not None:
                moved.append(decision.state)
            if decision.suppressed is not None:
                log.info("rule.suppressed", rule=rule.id, resource=str(key), reason=decision.suppressed)
            if decision.emit is not None:
                firings.append(Firing(rule=rule, status=decision.emit, changes=st.changes))
        events, deliveries, sequence = self._emit(obs, firings, snapshot, rules)
        return PollResult(
            snapshot=replace(snapshot, sequence=sequence, version=snapshot.version + 1),
            events=events,
            deliveries=deliveries,
            rule_states=tuple(moved),
        )

    def _emit(
        self, obs: Observation, firings: Sequence[Firing], snapshot: Snapshot, rules: RuleSet
    ) -> tuple[tuple[Event, ...], tuple[Delivery, ...], int]:
        """One event per firing, numbered on from the resource's last sequence, with its deliveries."""
        sequence = snapshot.sequence
        events: list[Event] = []
        deliveries: list[Delivery] = []
        for firing in firings:
            sequence += 1
            event = self._notify.event(obs, firing, sequence)
            events.append(event)
            deliveries.extend(self._notify.deliveries(event, firing, snapshot.state, rules))
        return tuple(events), tuple(deliveries), sequence

    def _through_state(
        self, obs: Observation, firings: list[Firing], changes: Sequence[Change], rules: RuleSet
    ) -> tuple[list[Firing], list[RuleState]]:
        """Pass stateful rules' triggers through their state machine; check their running holds and
        firings against the new state (a hold breaks, a firing resolves)."""
        key, now = obs.key, obs.observed_at
        out = [f for f in firings if f.rule.id not in rules.stateful]
        triggered = {f.rule.id: f for f in firings if f.rule.id in rules.stateful}
        moved: list[RuleState] = []
        for rule_id in sorted(triggered.keys() | self._open.get(key, set()), key=rules.order):
            rule = rules.by_id.get(rule_id)
            if rule is None or rule.source != key.source:
                continue  # removed by a reload: the timer tick forgets it
            prior = self._states.get((rule_id, key))
            hit = triggered.get(rule_id)
            relevant = hit.changes if hit is not None else tuple(c for c in changes if rule.watches(c.field))
            decision = on_observation(
                rules.timings[rule_id],
                rule_id=rule_id,
                key=key,
                prior=prior,
                triggered=hit is not None,
                active=rule.active(obs.state),
                changes=relevant,
                now=now,
            )
            if decision.state is not None:
                moved.append(decision.state)
            if decision.suppressed is not None:
                log.info("rule.suppressed", rule=rule_id, resource=str(key), reason=decision.suppressed)
            if decision.emit is not None:
                out.append(Firing(rule=rule, status=decision.emit, changes=relevant))
        out.sort(key=lambda f: rules.order(f.rule.id))
        return out, moved


def _snapshot(obs: Observation, digest: str, sequence: int, *, version: int = 1) -> Snapshot:
    """The snapshot to write; `version` is the stored one's plus one (1: there is none yet)."""
    return Snapshot(
        key=obs.key,
        state=obs.state,
        digest=digest,
        sequence=sequence,
        updated_at=obs.observed_at,
        version=version,
    )
