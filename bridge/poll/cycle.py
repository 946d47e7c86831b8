"""One poll cycle: provider → observations → diff → rules → one store commit → wake delivery.

Like Home Assistant's DataUpdateCoordinator without HA: a failed fetch changes nothing and only
updates provider health; a successful one commits each resource's new snapshot together with the
events it caused and their deliveries (DESIGN.md "one transaction per poll result").
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from bridge import errors
from bridge.channels.base import Channel
from bridge.clock import Clock
from bridge.metrics import Metrics
from bridge.model import (
    Change,
    Delivery,
    Event,
    EventKind,
    Observation,
    PollResult,
    ResourceKey,
    RuleState,
    Snapshot,
    Watch,
)
from bridge.notify.render import Notifier
from bridge.notify.rulebook import RuleBook
from bridge.poll.diff import diff, digest64, meaningful_digest
from bridge.poll.fetch_pool import FetchPool, PageRequest
from bridge.poll.health import HealthBoard
from bridge.providers.base import FetchResult, Provider
from bridge.rules.engine import Firing, RuleSet
from bridge.rules.state import on_due, on_observation
from bridge.store.base import Store

log = structlog.get_logger(__name__)

HEALTH_SOURCE = "bridge.provider"
LISTING_MARKER = ""  # resource id of the row that records "a complete listing was baselined"
# A by-id group is fetched and committed in slices of this many watches: memory stays bounded at any
# fleet size, and a slice's results (which arrive together) are group-committed in one transaction.
SLICE = 500
LANES = 2  # slices in progress at once (fetching, diffing, committing), each lane one after another


@dataclass(frozen=True, slots=True, kw_only=True)
class PollSummary:
    provider: str
    group: str
    ok: bool
    observed: int = 0
    failed: int = 0
    changed: int = 0
    events: int = 0
    retry_after: float | None = None


@dataclass(slots=True)
class _Tally:
    """What the slices of one poll saw, summed up for the summary and the provider's health."""

    observed: int = 0
    failures: int = 0
    first_failure: str | None = None
    changed: int = 0
    events: int = 0
    retry_after: float | None = None

    errors: dict[str, str] = field(default_factory=dict)  # the first few, for the poll's log line

    def fetched(self, result: FetchResult) -> None:
        self.observed += result.observed
        self.failures += len(result.failures)
        if result.failures and self.first_failure is None:
            self.first_failure = str(next(iter(result.failures.values())))
        for resource, failure in result.failures.items():
            if len(self.errors) >= 5:
                break
            self.errors[resource] = str(failure)
        if result.retry_after is not None:
            self.retry_after = max(self.retry_after or 0.0, result.retry_after)


class Poller:
    def __init__(
        self,
        *,
        store: Store,
        rulebook: RuleBook,
        channels: Mapping[str, Channel],
        clock: Clock,
        health: HealthBoard,
        on_committed: Callable[[], None] = lambda: None,
        digest_groups: Mapping[str, tuple[str, ...]] | None = None,
        metrics: Metrics | None = None,
        fetch_pools: Mapping[str, FetchPool] | None = None,
    ) -> None:
        self._store = store
        self._pools = fetch_pools or {}  # provider → its fetch workers, when it has any
        self._metrics = metrics
        self._rulebook = rulebook
        self._clock = clock
        self.health = health
        self._on_committed = on_committed
        # The last committed bridge.provider snapshots (loaded lazily; the store has them too).
        self._health_snapshots: dict[str, Snapshot] = {}
        # Rule states as committed (the store is the truth; this is its cache, loaded at start).
        self._states: dict[tuple[str, ResourceKey], RuleState] = {}
        self._open: dict[ResourceKey, set[str]] = defaultdict(set)  # pending or firing, by resource
        self._notify = Notifier(channels, digest_groups=digest_groups or {})
        # From reading snapshots to committing: a timer firing must not interleave with a poll of the
        # same resource (both bump its sequence). Fetching happens outside it.
        self._lock = asyncio.Lock()
        self._rules_seen: RuleSet | None = None  # the rule set whose removed rules were last pruned
        # (provider, source) → resource id → the stored digest in 64 bits (see `digest64`): unchanged
        # polls are decided here, without a store round trip. Loaded per source on first use, updated
        # after each commit; the store stays the truth (snapshot states are never kept in memory).
        self._digests: dict[tuple[str, str], dict[str, int]] = {}

    async def load_state(self) -> None:
        """Read stored rule states (running holds, firings, cooldowns) so a restart continues them."""
        self._remember(await self._store.list_rule_states())

    def _remember(self, states: Iterable[RuleState]) -> None:
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

    @property
    def rule_states(self) -> list[RuleState]:
        return list(self._states.values())

    def next_due(self) -> datetime | None:
        """When the earliest hold ends or reminder is due (None: no timer running)."""
        return min((s.due_at for s in self._states.values() if s.due_at is not None), default=None)

    async def _refresh_silences(self, now: datetime) -> None:
        self._notify.silences = await self._store.list_silences(active_after=now)

    async def load_health(self) -> None:
        """Read stored `bridge.provider` snapshots, so a restart does not re-baseline them."""
        for provider in list(self.health.providers):
            snap = await self._store.get_snapshot(
                ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
            )
            if snap is not None:
                self._health_snapshots[provider] = snap

    async def poll(self, provider: Provider, group: str) -> PollSummary:
        """Fetch one watch group and commit what changed. Never raises for a provider fault."""
        started = time.perf_counter()
        now = self._clock.now()
        tally = _Tally()
        try:
            await self._poll_slices(provider, group, now, tally)
        except errors.ProviderError as exc:
            self.health.failure(provider.name, str(exc), now)
            async with self._lock:
                await self._commit(self._health_results(provider.name, now))
            elapsed = time.perf_counter() - started
            log.warning(
                "poll.failed",
                provider=provider.name,
                group=group,
                duration_ms=round(elapsed * 1000, 1),
                error=str(exc),
                kind=exc.kind,
            )
            if self._metrics is not None:
                self._metrics.poll(provider.name, "failed", elapsed)
            return PollSummary(provider=provider.name, group=group, ok=False, retry_after=exc.retry_after)

        if tally.first_failure is not None:
            self.health.failure(provider.name, tally.first_failure, now, partial=bool(tally.observed))
        else:
            self.health.success(provider.name, now)
        async with self._lock:
            health = self._health_results(provider.name, now)
            await self._commit(health)
        summary = PollSummary(
            provider=provider.name,
            group=group,
            ok=not tally.failures,
            observed=tally.observed,
            failed=tally.failures,
            changed=tally.changed,
            events=tally.events + sum(len(r.events) for r in health),
            retry_after=tally.retry_after,
        )
        elapsed = time.perf_counter() - started
        # One line per poll: a partial failure names (a few of) its failed resources here.
        (log.warning if tally.failures else log.info)(
            "poll.completed",
            provider=provider.name,
            group=group,
            duration_ms=round(elapsed * 1000, 1),
            observations=summary.observed,
            failed=summary.failed,
            changes=summary.changed,
            events=summary.events,
            **({"errors": tally.errors} if tally.errors else {}),
        )
        if self._metrics is not None:
            outcome = "ok" if not tally.failures else "partial" if tally.observed else "failed"
            self._metrics.poll(provider.name, outcome, elapsed)
        return summary

    async def _poll_slices(self, provider: Provider, group: str, now: datetime, tally: _Tally) -> None:
        """A by-id group slice by slice, reading its watches page by page, in two lanes. Any other
        group (a listing) is one piece."""
        spec = next((g for g in provider.watch_groups() if g.name == group), None)
        if spec is None or not spec.by_id:
            watches = await self._store.list_watches(provider=provider.name)
            await self._settle(provider.name, await provider.fetch(group, watches), now, tally)
            return
        cursor: list[tuple[str, str] | None] = [None]  # where the next page starts; None: at the start
        turn = asyncio.Lock()  # pages are read in order, one at a time
        finished = False

        async def next_page() -> list[Watch]:
            nonlocal finished
            async with turn:
                if finished:
                    return []
                page = await self._store.list_watches_page(
                    provider.name, source=spec.source, after=cursor[0], limit=SLICE
                )
                finished = len(page) < SLICE
                if page:
                    cursor[0] = (page[-1].key.source, page[-1].key.resource_id)
                return page

        pool = self._pools.get(provider.name)

        async def fetch(page: list[Watch]) -> FetchResult:
            if pool is None:
                return await provider.fetch(group, page)
            known = await self._known_digests(provider.name, spec.source or "")
            return await pool.fetch(
                PageRequest(
                    group=group,
                    watches=page,
                    keep=self._rulebook.current.keep_fields(spec.source or ""),
                    known={
                        w.key.resource_id: known[w.key.resource_id]
                        for w in page
                        if w.key.resource_id in known
                    },
                )
            )

        async def lane() -> None:
            while page := await next_page():
                await self._settle(provider.name, await fetch(page), now, tally)

        # Two lanes: one page's tail of slow requests and its commit overlap the other's fetch (one lane
        # left ~10 % of a paced rate idle, bench/scale.py); with fetch workers, one more lane than
        # workers keeps each of them busy. A TaskGroup: a crash in one lane, or the poll being
        # cancelled, cancels the others; its exception group is unwrapped, so callers see a
        # ProviderError / StoreError as before.
        try:
            async with asyncio.TaskGroup() as tasks:
                for _ in range(max(LANES, pool.workers + 1) if pool is not None else LANES):
                    tasks.create_task(lane())
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _settle(self, provider: str, fetched: FetchResult, now: datetime, tally: _Tally) -> None:
        """Diff, rules and one group commit for what one fetch returned."""
        async with self._lock:
            results = await self._results(provider, fetched, now)
            await self._commit(results)
        tally.fetched(fetched)  # after the deferred checks; failures are named in the poll's log line
        tally.changed += len(results)
        tally.events += sum(len(r.events) for r in results)

    async def _commit(self, results: list[PollResult]) -> None:
        """Group commit: the results that arrived together in one transaction. Should that fail, each
        result is committed alone, so one bad result cannot take the others down with it (it is read
        again by the next poll: nothing is lost)."""
        if not results:
            return
        try:
            await self._store.commit(results)
            committed = results
        except errors.StoreError:
            if len(results) == 1:
                raise
            committed = await self._commit_each(results)
        if self._metrics is not None:
            self._metrics.committed(committed)
        self._remember(st for r in committed for st in r.rule_states)
        for r in committed:
            k = r.snapshot.key
            known = self._digests.get((k.provider, k.source))
            if known is not None:
                known[k.resource_id] = digest64(r.snapshot.digest)
        if any(r.deliveries for r in committed):
            self._on_committed()

    async def _commit_each(self, results: list[PollResult]) -> list[PollResult]:
        committed: list[PollResult] = []
        first: errors.StoreError | None = None
        for r in results:
            try:
                await self._store.commit([r])
            except errors.StoreError as exc:
                first = first or exc
                log.error("poll.result_failed", resource=str(r.snapshot.key), error=str(exc))
            else:
                committed.append(r)
        if not committed and first is not None:
            raise first  # nothing went through: the store itself is failing
        return committed

    async def _known_digests(self, provider: str, source: str) -> dict[str, int]:
        known = self._digests.get((provider, source))
        if known is None:
            stored = await self._store.get_digests(provider, source)
            known = {rid: digest64(d) for rid, d in stored.items()}
            self._digests[(provider, source)] = known
        return known

    async def _results(self, provider: str, fetched: FetchResult, now: datetime) -> list[PollResult]:
        rules = self._rulebook.current
        results: list[PollResult] = []
        by_source: dict[str, list[Observation]] = defaultdict(list)
        for obs in fetched.observations:
            by_source[obs.key.source].append(obs)
        for source in fetched.complete_sources:
            by_source.setdefault(source, [])
        silences_fresh = False
        for source, observations in by_source.items():
            known = await self._known_digests(provider, source)
            appears = False
            if source in fetched.complete_sources:
                # A complete listing: what we stored but no longer see has disappeared. The marker row
                # (resource id "") says a first listing was taken, so a new id after it has *appeared*.
                appears = LISTING_MARKER in known
                seen = {o.key.resource_id for o in observations}
                gone = digest64("gone")
                observations = observations + [
                    Observation(
                        key=ResourceKey(source=source, provider=provider, resource_id=rid),
                        state=None,
                        observed_at=now,
                    )
                    for rid, d in known.items()
                    if rid and rid not in seen and d != gone
                ]
                if not appears:
                    marker = ResourceKey(source=source, provider=provider, resource_id=LISTING_MARKER)
                    results.append(
                        PollResult(
                            snapshot=Snapshot(
                                key=marker, state=None, digest="listing", sequence=0, updated_at=now
                            )
                        )
                    )
            keep = rules.keep_fields(source)
            todo: list[tuple[Observation, str, str | None]] = []
            for obs in observations:
                digest = fetched.digests.get(obs.key.resource_id) or meaningful_digest(
                    obs.state, source=source, keep=keep
                )
                end = fetched.terminal.get(obs.key.resource_id)
                if end is None and known.get(obs.key.resource_id) == digest64(digest):
                    continue  # only volatile fields moved: no store round trip, nothing written
                if fetched.passes(obs):  # the deferred schema check: only for what changed
                    todo.append((obs, digest, end))
            if not todo:
                continue
            stored = await self._store.get_snapshots_by_id(
                provider, source, [o.key.resource_id for o, _, _ in todo if o.key.resource_id in known]
            )
            if not silences_fresh:
                await self._refresh_silences(now)
                silences_fresh = True
            for obs, digest, end in todo:
                snapshot = stored.get(obs.key.resource_id)
                result = self._process(obs, snapshot, rules, appears=appears, end_watch=end, digest=digest)
                if result is not None:
                    results.append(result)
        return results

    async def observe_internal(self, key: ResourceKey, state: dict[str, Any]) -> None:
        """Run one of the bridge's own resources (`bridge.channel`) through diff, rules and the outbox."""
        obs = Observation(key=key, state=state, observed_at=self._clock.now())
        async with self._lock:
            await self._refresh_silences(obs.observed_at)
            result = self._process(obs, await self._store.get_snapshot(key), self._rulebook.current)
            if result is not None:
                await self._commit([result])

    async def tick(self) -> int:
        """End the holds and send the reminders that are due now; returns how many notified."""
        now = self._clock.now()
        if self._rulebook.current is not self._rules_seen:
            await self._forget_removed_rules()
        if not any(s.due_at is not None and s.due_at <= now for s in self._states.values()):
            return 0
        async with self._lock:
            await self._refresh_silences(now)
            rules = self._rulebook.current
            due: dict[ResourceKey, list[RuleState]] = defaultdict(list)
            for st in self._states.values():
                if st.due_at is not None and st.due_at <= now:
                    due[st.key].append(st)
            results = []
            for key, states in due.items():
                snapshot = await self._store.get_snapshot(key)
                result = self._due(key, snapshot, states, rules, now)
                if result is not None:
                    results.append(result)
            await self._commit(results)
        return sum(len(r.events) for r in results)

    async def _forget_removed_rules(self) -> None:
        """After a reload: drop the timers of rules that no longer exist (kept ones continue)."""
        rules = self._rulebook.current
        gone = sorted({st.rule_id for st in self._states.values()} - rules.by_id.keys())
        if gone:
            async with self._lock:
                await self._store.delete_rule_states(gone)
                self._remember(
                    replace(st, phase="idle", last_fired_at=None)
                    for st in list(self._states.values())
                    if st.rule_id in gone
                )
            log.info("rules.timers_dropped", rules=gone)
        self._rules_seen = rules

    def _due(
        self,
        key: ResourceKey,
        snapshot: Snapshot | None,
        states: Sequence[RuleState],
        rules: RuleSet,
        now: datetime,
    ) -> PollResult | None:
        if snapshot is None:  # never stored (cannot happen after a commit): nothing to notify about
            self._remember(replace(st, phase="idle", last_fired_at=None) for st in states)
            return None
        obs = Observation(key=key, state=snapshot.state, observed_at=now)
        sequence = snapshot.sequence
        events: list[Event] = []
        deliveries: list[Delivery] = []
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
                sequence += 1
                firing = Firing(rule=rule, status=decision.emit, changes=st.changes)
                event = self._notify.event(obs, firing, sequence)
                events.append(event)
                deliveries.extend(self._notify.deliveries(event, firing, snapshot.state, rules))
        return PollResult(
            snapshot=replace(snapshot, sequence=sequence),
            events=tuple(events),
            deliveries=tuple(deliveries),
            rule_states=tuple(moved),
        )

    def _health_results(self, provider: str, now: datetime) -> list[PollResult]:
        """`bridge.provider` is a resource like any other: rules can alert on it."""
        key = ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
        obs = Observation(key=key, state=self.health.get(provider).as_state(), observed_at=now)
        snapshot = self._health_snapshots.get(provider)
        result = self._process(obs, snapshot, self._rulebook.current)
        if result is None:
            return []
        self._health_snapshots[provider] = result.snapshot
        return [result]

    def _process(
        self,
        obs: Observation,
        snapshot: Snapshot | None,
        rules: RuleSet,
        *,
        appears: bool = False,
        end_watch: str | None = None,
        digest: str | None = None,
    ) -> PollResult | None:
        source = obs.key.source
        keep = rules.keep_fields(source)
        if digest is None:
            digest = meaningful_digest(obs.state, source=source, keep=keep)
        if snapshot is None and not appears:
            if obs.state is None:
                return None  # never seen and not there: nothing to baseline
            # The first observation is the baseline: stored, fires nothing.
            return PollResult(snapshot=self._snapshot(obs, digest, 0), end_watch=end_watch)
        if snapshot is None:
            # New in a listing that was already baselined: it appeared.
            snapshot = Snapshot(
                key=obs.key, state=None, digest="gone", sequence=0, updated_at=obs.observed_at
            )
        if snapshot.digest == digest:
            if end_watch is not None:  # terminal and unchanged: still end the watch
                return PollResult(snapshot=snapshot, end_watch=end_watch)
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
        sequence = snapshot.sequence
        events: list[Event] = []
        deliveries: list[Delivery] = []
        for firing in firings:
            sequence += 1
            event = self._notify.event(obs, firing, sequence)
            events.append(event)
            deliveries.extend(self._notify.deliveries(event, firing, snapshot.state, rules))
        return PollResult(
            snapshot=self._snapshot(obs, digest, sequence),
            events=tuple(events),
            deliveries=tuple(deliveries),
            end_watch=end_watch,
            rule_states=tuple(moved),
        )

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
                continue  # removed by a reload: tick() forgets it
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

    def _snapshot(self, obs: Observation, digest: str, sequence: int) -> Snapshot:
        return Snapshot(
            key=obs.key, state=obs.state, digest=digest, sequence=sequence, updated_at=obs.observed_at
        )
