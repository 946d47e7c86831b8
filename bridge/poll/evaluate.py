"""From an observation and its stored snapshot to the poll result to commit: baseline, diff, rules,
the rule-state machine, the events and their deliveries. No I/O: the cycle reads and commits.

`Evaluator` also mirrors the committed rule states (running holds, firings, cooldowns), because the
state machine needs a resource's open rules on every observation; the store stays the truth.
Its stale-rule helpers are mixed in from `stale_checks.py`; the traces of an observed transition
are built by `traced.py`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

import structlog

from bridge.channels.base import Channel
from bridge.config.windows import Schedule
from bridge.explain.notes import Notes
from bridge.model import (
    Change,
    Check,
    Delivery,
    Event,
    EventKind,
    FlapState,
    Observation,
    PollResult,
    ResourceKey,
    RuleState,
    Silence,
    Snapshot,
    Trace,
    Watch,
)
from bridge.notify.links import LinkSigner
from bridge.notify.render import Notifier
from bridge.poll.decided import firing_of, note_due, note_observed
from bridge.poll.diff import diff, meaningful_digest
from bridge.poll.due_index import DueIndex
from bridge.poll.flapping import FlapBook, FlapPass
from bridge.poll.stale_checks import StaleChecks
from bridge.poll.traced import observed_traces
from bridge.rules import acks, stale
from bridge.rules.engine import Firing, Rule, RuleSet
from bridge.rules.state import Decision, on_due, on_observation

log = structlog.get_logger(__name__)


class Evaluator(StaleChecks):
    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        digest_groups: Mapping[str, tuple[str, ...]],
        event_types: Mapping[str, Callable[[str], bool]] | None = None,
        windows: Mapping[str, Schedule] | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self._states: dict[tuple[str, ResourceKey], RuleState] = {}
        self._due: DueIndex[tuple[str, ResourceKey]] = DueIndex(self._due_at)
        self._open: dict[ResourceKey, set[str]] = defaultdict(set)  # pending or firing, by resource
        # Firing states by rule id, then provider: what inhibition (#14) looks up.
        self._firing: dict[str, dict[str, set[ResourceKey]]] = {}
        self._notify = Notifier(
            channels, digest_groups=digest_groups, event_types=event_types, windows=windows, links=links
        )
        # Stale rules without a field (#14): when each resource was last read, by (provider,
        # source), as POSIX seconds; only for sources such a rule watches. Lost at a restart, so
        # `started_at` bounds what is not known (bridge/rules/stale.py).
        self._reads: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        self.started_at: datetime | None = None
        # (rule, provider, source) → the resource ids with a stored state: which reads arm a timer.
        self._kept: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self.flaps = FlapBook()  # flap detection states (#14), committed like rule states

    def set_silences(self, silences: Sequence[Silence]) -> None:
        self._notify.silences = list(silences)

    def remember(self, states: Iterable[RuleState]) -> None:
        """Mirror rule states that were committed (or loaded at start)."""
        for st in states:
            k = (st.rule_id, st.key)
            ids = self._kept[(st.rule_id, st.key.provider, st.key.source)]
            if st.forgettable:
                self._states.pop(k, None)
                ids.discard(st.key.resource_id)
            else:
                prior = self._states.get(k)
                self._states[k] = st
                if prior is None or prior.next_due != st.next_due:  # else it is indexed already
                    self._due.push(k, st.next_due)
                ids.add(st.key.resource_id)
            by_provider = self._firing.setdefault(st.rule_id, {})
            if st.phase == "firing":
                by_provider.setdefault(st.key.provider, set()).add(st.key)
            else:
                by_provider.get(st.key.provider, set()).discard(st.key)
            if st.phase == "idle":
                self._open[st.key].discard(st.rule_id)
                if not self._open[st.key]:
                    del self._open[st.key]
            else:
                self._open[st.key].add(st.rule_id)

    def forget(self, keys: Iterable[tuple[str, ResourceKey]]) -> None:
        """Stop mirroring these (rule, resource) states: their rows were deleted (by another replica)."""
        self.remember(
            replace(st, phase="idle", last_fired_at=None)
            for k in keys
            if (st := self._states.get(k)) is not None
        )

    def replace_all(self, states: Iterable[RuleState]) -> None:
        """Mirror exactly these states (read back from a store other replicas write too)."""
        self._states.clear()
        self._open.clear()
        self._firing.clear()  # else an inhibitor another replica ended would still inhibit
        self._kept.clear()
        self._due.rebuild(())
        self.remember(states)

    @property
    def states(self) -> list[RuleState]:
        return list(self._states.values())

    def state_of(self, rule_id: str, key: ResourceKey) -> RuleState | None:
        return self._states.get((rule_id, key))

    def _due_at(self, k: tuple[str, ResourceKey]) -> datetime | None:
        st = self._states.get(k)
        return st.next_due if st is not None else None

    def next_due(self) -> datetime | None:
        """When the earliest hold ends, reminder or escalation step is due (None: no timer running)."""
        return self._due.earliest(len(self._states))

    def due_now(self, now: datetime, limit: int | None = None) -> dict[ResourceKey, list[RuleState]]:
        """What is due now (the earliest `limit` timers, when given), by resource."""
        due: dict[ResourceKey, list[RuleState]] = defaultdict(list)
        for k in self._due.due(now, limit):
            due[k[1]].append(self._states[k])
        return due

    def due_of(self, key: ResourceKey, now: datetime) -> list[RuleState]:
        """The states of one resource that are due now (what `due_now` has for it)."""
        found = (self._states.get((rule_id, key)) for rule_id in self._open.get(key, ()))
        return [st for st in found if st is not None and (d := st.next_due) is not None and d <= now]

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
        notes = Notes()
        if rules.stateful and (obs.key in self._open or any(f.rule.id in rules.stateful for f in firings)):
            firings, moved = self._through_state(obs, firings, changes, rules, notes)
        flaps: FlapPass | None = None
        if kind == "changed" and source in rules.flappers:
            flaps = self.flaps.observe(rules, obs.key, snapshot.state, obs.state, changes, obs.observed_at)
            firings = [*firings, *flaps.notices]
        events, deliveries, sequence = self._emit(obs, firings, snapshot, rules, notes, moved, flaps)
        traces = observed_traces(obs, kind, snapshot.state, changes, rules, notes)
        return PollResult(
            snapshot=_snapshot(obs, digest, sequence, version=snapshot.version + 1),
            events=events,
            deliveries=deliveries,
            end_watch=end_watch,
            start_watch=start_watch,
            rule_states=tuple(moved),
            traces=traces,
            flaps=flaps.states if flaps is not None else (),
        )

    def due(
        self,
        key: ResourceKey,
        snapshot: Snapshot | None,
        states: Sequence[RuleState],
        rules: RuleSet,
        now: datetime,
        flapping: Sequence[FlapState] = (),
    ) -> PollResult | None:
        """Holds that end and reminders that are due now, against the resource's stored state; and
        flapping that settles now (`flapping`: its due flap states, #14)."""
        if snapshot is None:  # never stored (cannot happen after a commit): nothing to notify about
            self.remember(replace(st, phase="idle", last_fired_at=None) for st in states)
            return None
        obs = Observation(key=key, state=snapshot.state, observed_at=now)
        firings: list[Firing] = []
        moved: list[RuleState] = []
        notes = Notes()
        checked: dict[str, bool] = {}
        for st in sorted(states, key=lambda s: rules.order(s.rule_id)):
            rule = rules.by_id.get(st.rule_id)
            if rule is None:  # the rule was removed by a reload: forget its timers
                moved.append(replace(st, phase="idle", last_fired_at=None))
                continue
            active = checked[rule.id] = rule.active(snapshot.state)
            timing = rules.timings[rule.id]

            def inner(prior: RuleState, rule: Rule = rule, active: bool = active) -> Decision:
                if rule.stale_after is not None:
                    return self.stale_check(rule, prior, snapshot.state, now)
                return on_due(rules.timings[rule.id], prior=prior, active=active, now=now)

            decision = acks.on_timer(timing, prior=st, active=active, now=now, inner=inner)
            if decision.state is not None:
                moved.append(decision.state)
            if decision.suppressed is not None:
                log.info("rule.suppressed", rule=rule.id, resource=str(key), reason=decision.suppressed)
            note_due(notes, rule.id, st, decision)
            if decision.emit is not None:
                firings.append(firing_of(rule, st, decision))
        flaps = self.flaps.settle(rules, key, flapping, snapshot.state, now)
        firings += flaps.notices
        events, deliveries, sequence = self._emit(obs, firings, snapshot, rules, notes, moved, flaps)
        traces = tuple(
            Trace(
                rule_id=rule_id,
                key=key,
                at=now,
                trigger="timer",
                changes=next((st.changes for st in states if st.rule_id == rule_id), ()),
                checks=(
                    Check(name="condition", want="still true", got=checked[rule_id], ok=checked[rule_id]),
                ),
                outcome=note.outcome,
                reasons=note.reasons,
                event_ids=note.event_ids,
            )
            for rule_id in notes.rules()
            if rule_id in checked and (note := notes.get(rule_id)) is not None
        )
        traces += tuple(
            Trace(
                rule_id=f.rule.id,
                key=key,
                at=now,
                trigger="timer",
                changes=f.changes,
                outcome=n.outcome,
                reasons=n.reasons,
                event_ids=n.event_ids,
            )
            for f in flaps.notices
            if f.rule.id not in checked and (n := notes.get(f.rule.id)) is not None
        )
        return PollResult(
            snapshot=replace(snapshot, sequence=sequence, version=snapshot.version + 1),
            events=events,
            deliveries=deliveries,
            rule_states=tuple(moved),
            traces=traces,
            flaps=flaps.states,
        )

    def _emit(
        self,
        obs: Observation,
        firings: Sequence[Firing],
        snapshot: Snapshot,
        rules: RuleSet,
        notes: Notes,
        moved: Sequence[RuleState] = (),
        flaps: FlapPass | None = None,
    ) -> tuple[tuple[Event, ...], tuple[Delivery, ...], int]:
        """One event per firing, numbered on from the resource's last sequence, with its deliveries;
        the trace notes say what became of each delivery (queued, silenced, deferred, …)."""
        sequence = snapshot.sequence
        events: list[Event] = []
        deliveries: list[Delivery] = []
        opened: dict[str, int] = {}
        for firing in firings:
            sequence += 1
            event = self._notify.event(obs, firing, sequence)
            opens = firing.status == "firing" and firing.firing_seq is None and firing.flap is None
            if opens and firing.rule.id in rules.stateful:  # a flapping notice opens no firing
                opened[firing.rule.id] = sequence  # this notification opens the firing: its number
            events.append(event)
            inhibited = self._inhibited(firing, obs.key, rules, moved)
            held = flaps.held_back(firing) if flaps is not None else None
            sent = self._notify.deliveries(
                event, firing, snapshot.state, rules, inhibited=inhibited, flapping=held
            )
            deliveries.extend(sent)
            notes.emitted(firing, event.id, [(d.channel, *self._notify.why(d)) for d in sent])
            if flaps is not None and held is not None and sent:
                flaps.muted(firing.rule.id)
            if firing.flap is not None:
                notes.flapped(firing)
        if opened and isinstance(moved, list):  # the opened firings' states learn their number (#14)
            moved[:] = [
                replace(st, firing_seq=opened[st.rule_id])
                if st.rule_id in opened and st.phase == "firing" and st.key == obs.key
                else st
                for st in moved
            ]
        return tuple(events), tuple(deliveries), sequence

    def _inhibited(
        self, firing: Firing, key: ResourceKey, rules: RuleSet, moved: Sequence[RuleState]
    ) -> str | None:
        """Why this firing is muted by another rule that fires on the same resource or provider
        (the committed states, updated by what this very result moves: one poll can start both)."""
        for inhibitor in rules.inhibitors.get(firing.rule.id, ()):
            keys = set(self._firing.get(inhibitor.id, {}).get(key.provider, set()))
            for st in moved:
                if st.rule_id == inhibitor.id and st.key.provider == key.provider:
                    (keys.add if st.phase == "firing" else keys.discard)(st.key)
            if inhibitor.inhibit_scope == "resource":
                keys = {k for k in keys if k.resource_id == key.resource_id}
            if keys:
                on = min(keys, key=str)
                return f"inhibited by {inhibitor.id}, firing on {on} ({inhibitor.inhibit_scope} scope)"
        return None

    def _through_state(
        self, obs: Observation, firings: list[Firing], changes: Sequence[Change], rules: RuleSet, notes: Notes
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
            if rule.stale_after is not None:
                if prior is None:
                    continue
                if obs.state is None:
                    decision = stale.gone(prior)
                else:
                    fresh = self.fresh_at(rule, prior, obs.state)
                    decision = stale.on_report(rule.timing, prior=prior, fresh=fresh, now=now)
                if decision.state is not None:
                    moved.append(decision.state)
                if decision.emit is not None:
                    out.append(firing_of(rule, prior, decision, changes=()))
                continue
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
            note_observed(notes, rule_id, prior, decision, triggered=hit is not None)
            if decision.emit is not None:
                out.append(firing_of(rule, prior, decision, changes=relevant))
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
