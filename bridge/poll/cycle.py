"""One poll cycle: provider → observations → evaluate → one store commit → wake delivery.

Like Home Assistant's DataUpdateCoordinator without HA: a failed fetch changes nothing and only
updates provider health; a successful one commits each resource's new snapshot together with the
events it caused and their deliveries (DESIGN.md "one transaction per poll result"). What an
observation changes is decided by `evaluate.Evaluator`; what a listing means, by `listing`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from bridge import errors
from bridge.channels.base import Channel
from bridge.clock import Clock
from bridge.config.models import DEFAULT_RETRY_AFTER_CAP
from bridge.config.windows import Schedule
from bridge.deliver.handoff import Handoff
from bridge.lifecycle import finish_before_cancel
from bridge.metrics import Metrics
from bridge.model import (
    HEALTH_SOURCE,
    FlapState,
    Observation,
    PollResult,
    ResourceKey,
    RuleState,
    Snapshot,
    Watch,
)
from bridge.notify.links import LinkSigner
from bridge.notify.rulebook import RuleBook
from bridge.poll import acking, flapping, stale_reads
from bridge.poll.acking import AckRequest
from bridge.poll.backoff import ProviderBackoff
from bridge.poll.diff import digest64, meaningful_digest
from bridge.poll.evaluate import Evaluator
from bridge.poll.fetch_pool import FetchPool, PageRequest
from bridge.poll.health import HealthBoard
from bridge.poll.listing import complete_listing
from bridge.poll.summary import PollSummary, Tally
from bridge.providers.base import FetchResult, Provider
from bridge.rules.engine import RuleSet
from bridge.store.base import Fence, Store

log = structlog.get_logger(__name__)

# A by-id group is fetched and committed in slices of this many watches: memory stays bounded at any
# fleet size, and a slice's results (which arrive together) are group-committed in one transaction.
SLICE = 500
TICK_LIMIT = 5000  # due timers one tick acts on (a second later, the next ones)
LANES = 2  # slices in progress at once (fetching, diffing, committing), each lane one after another


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
        handoff: Handoff | None = None,
        digest_groups: Mapping[str, tuple[str, ...]] | None = None,
        metrics: Metrics | None = None,
        fetch_pools: Mapping[str, FetchPool] | None = None,
        event_types: Mapping[str, Callable[[str], bool]] | None = None,
        windows: Mapping[str, Schedule] | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self._store = store
        self._pools = fetch_pools or {}  # provider → its fetch workers, when it has any
        self._metrics = metrics
        self._rulebook = rulebook
        self._clock = clock
        self.health = health
        self._on_committed = on_committed
        # The delivery worker of this process, when fresh deliveries go to it without a claim.
        self._handoff = handoff
        # The last committed bridge.provider snapshots (loaded lazily; the store has them too).
        self._health_snapshots: dict[str, Snapshot] = {}
        self._evaluate = Evaluator(
            channels,
            digest_groups=digest_groups or {},
            event_types=event_types,
            windows=windows,
            links=links,
        )
        # From reading snapshots to committing: a timer firing must not interleave with a poll of the
        # same resource (both bump its sequence). Fetching happens outside it.
        self._lock = asyncio.Lock()
        self._rules_seen: RuleSet | None = None  # the rule set whose removed rules were last pruned
        # (provider, source) → resource id → the stored digest in 64 bits (see `digest64`): unchanged
        # polls are decided here, without a store round trip. Loaded per source on first use, updated
        # after each commit; the store stays the truth (snapshot states are never kept in memory).
        self._digests: dict[tuple[str, str], dict[str, int]] = {}
        self._health_stale: set[str] = set()  # providers whose health row another writer moved
        # On a store shared by replicas, another replica may have written any row since this one
        # last looked: the mirrors are read again at the start of each poll and tick.
        self._shared = store.shared

    async def load_state(self) -> None:
        """Read stored rule states (running holds, firings, cooldowns) so a restart continues them."""
        self._remember(await self._store.list_rule_states())
        self._evaluate.flaps.replace_all(await self._store.list_flap_states())
        self._evaluate.started_at = self._clock.now()

    def _remember(self, states: Iterable[RuleState]) -> None:
        self._evaluate.remember(states)

    @property
    def rule_states(self) -> list[RuleState]:
        return self._evaluate.states

    def rule_state(self, rule_id: str, key: ResourceKey) -> RuleState | None:
        return self._evaluate.state_of(rule_id, key)

    @property
    def flap_states(self) -> list[FlapState]:
        """Flap detection states (#14): counting and flapping, as last committed."""
        return self._evaluate.flaps.states

    @property
    def flapping(self) -> list[FlapState]:
        """The flap states that are flapping now (#14): status page, API, metrics."""
        return self._evaluate.flaps.flapping()

    def next_due(self) -> datetime | None:
        """When the earliest hold ends, reminder is due or flapping settles (None: no timer running)."""
        due = [d for d in (self._evaluate.next_due(), self._evaluate.flaps.next_due()) if d is not None]
        return min(due, default=None)

    async def _refresh_silences(self, now: datetime) -> None:
        self._evaluate.set_silences(await self._store.list_silences(active_after=now))

    async def load_health(self) -> None:
        """Read stored `bridge.provider` snapshots, so a restart does not re-baseline them."""
        for provider in list(self.health.providers):
            snap = await self._store.get_snapshot(
                ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
            )
            if snap is not None:
                self._health_snapshots[provider] = snap

    async def _refresh_mirrors(self, provider: str) -> None:
        """Shared store: forget this provider's digests, re-read rule states, read health again."""
        for source in [k for k in self._digests if k[0] == provider]:
            del self._digests[source]
        self._evaluate.replace_all(await self._store.list_rule_states())
        self._evaluate.flaps.replace_all(await self._store.list_flap_states())
        self._health_stale.add(provider)

    async def _reload_health(self, provider: str) -> None:
        if provider in self._health_stale:
            self._health_stale.discard(provider)
            snap = await self._store.get_snapshot(
                ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
            )
            if snap is not None:
                self._health_snapshots[provider] = snap

    def _backoff(self, provider: Provider, group: str) -> ProviderBackoff:
        h = self.health.get(provider.name)
        if h.backoff is None:  # not configured by the app (tests): the group's interval, default cap
            spec = next((g for g in provider.watch_groups() if g.name == group), None)
            interval = spec.interval if spec is not None else timedelta(minutes=1)
            h.backoff = ProviderBackoff(
                provider.name, interval=interval, cap=max(DEFAULT_RETRY_AFTER_CAP, 3 * interval)
            )
        return h.backoff

    async def poll(
        self, provider: Provider, group: str, *, shard: tuple[int, int] | None = None
    ) -> PollSummary:
        """Fetch one watch group (or shard K of N of a by-id group's watches, bridge/shards.py) and
        commit what changed. Never raises for a provider fault."""
        started = time.perf_counter()
        now = self._clock.now()
        backoff = self._backoff(provider, group)
        deferral = backoff.deferred(now)
        if deferral is not None:
            # The credential is rate limited: ask nothing; the timetable itself stays as it is.
            log.info(
                "poll.deferred",
                provider=provider.name,
                group=group,
                until=deferral.until.isoformat(),
                cause=deferral.cause,
            )
            if self._metrics is not None:
                self._metrics.poll(provider.name, "deferred", 0.0)
            return PollSummary(provider=provider.name, group=group, ok=False, deferred_until=deferral.until)
        tally = Tally()
        if self._shared:
            await self._refresh_mirrors(provider.name)
        try:
            await self._poll_slices(provider, group, now, tally, backoff, shard)
        except errors.ProviderError as exc:
            backoff.failed(exc, now)
            self.health.failure(provider.name, str(exc), now)
            async with self._lock:
                await self._reload_health(provider.name)
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
            deferred = backoff.deferred(now)
            return PollSummary(
                provider=provider.name,
                group=group,
                ok=False,
                deferred_until=deferred.until if deferred is not None else None,
            )

        if tally.first_failure is not None:
            self.health.failure(provider.name, tally.first_failure, now, partial=bool(tally.observed))
        else:
            self.health.success(provider.name, now)
        async with self._lock:
            await self._reload_health(provider.name)
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
            skipped=tally.skipped,
            deferred_until=deferred.until if (deferred := backoff.deferred(now)) is not None else None,
        )
        elapsed = time.perf_counter() - started
        # One line per poll: a partial failure names (a few of) its failed resources here.
        (log.warning if tally.failures else log.info)(
            "poll.completed",
            provider=provider.name,
            group=group,
            **({"shard": f"{shard[0]}/{shard[1]}"} if shard is not None else {}),
            duration_ms=round(elapsed * 1000, 1),
            observations=summary.observed,
            failed=summary.failed,
            changes=summary.changed,
            events=summary.events,
            **({"skipped": tally.skipped} if tally.skipped else {}),
            **({"errors": tally.errors} if tally.errors else {}),
        )
        if self._metrics is not None:
            outcome = "ok" if not tally.failures else "partial" if tally.observed else "failed"
            self._metrics.poll(provider.name, outcome, elapsed)
        return summary

    async def _poll_slices(
        self,
        provider: Provider,
        group: str,
        now: datetime,
        tally: Tally,
        backoff: ProviderBackoff,
        shard: tuple[int, int] | None = None,
    ) -> None:
        """A by-id group slice by slice, reading its watches page by page, in two lanes. Any other
        group (a listing) is one piece. Resources backing off are not asked (#18)."""
        spec = next((g for g in provider.watch_groups() if g.name == group), None)
        skip = backoff.skip(now)
        if spec is None or not spec.by_id:
            watches = await self._store.list_watches(provider=provider.name)
            fetched = await provider.fetch(group, watches, skip=skip)
            await self._settle(provider.name, fetched, now, tally, backoff)
            return
        cursor: list[tuple[str, str] | None] = [None]  # where the next page starts; None: at the start
        turn = asyncio.Lock()  # pages are read in order, one at a time
        finished = False

        async def next_page() -> list[Watch] | None:
            nonlocal finished
            async with turn:
                # A 429 that deferred the credential mid-poll stops the rest of the fleet too.
                if finished or backoff.deferred(self._clock.now()) is not None:
                    return None
                page = await self._store.list_watches_page(
                    provider.name, source=spec.source, after=cursor[0], limit=SLICE, shard=shard
                )
                finished = len(page) < SLICE
                if page:
                    cursor[0] = (page[-1].key.source, page[-1].key.resource_id)
                else:
                    return None
                asked = [w for w in page if w.key.resource_id not in skip]
                tally.skipped += len(page) - len(asked)
                return asked

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
            while (page := await next_page()) is not None:
                if page:
                    asked = {w.key.resource_id for w in page}
                    fetched = await fetch(page)
                    await self._settle(provider.name, fetched, now, tally, backoff, asked, spec.source)

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

    async def _settle(
        self,
        provider: str,
        fetched: FetchResult,
        now: datetime,
        tally: Tally,
        backoff: ProviderBackoff,
        asked: AbstractSet[str] | None = None,
        source: str | None = None,
    ) -> None:
        """Diff, rules and one group commit for what one fetch returned; then the back-off learns
        which resources were read and which failed (`asked`: the ids a by-id page asked for, since a
        fetch worker sends back only what changed)."""
        rules = self._rulebook.current
        reads = stale_reads.reads(fetched, asked, source) if rules.stale else {}
        stale_reads.note(self._evaluate, rules, provider, reads, now)
        async with self._lock:
            results = await self._results(provider, fetched, now)
            await self._commit(results)
            if reads:
                armed, resolved = await stale_reads.after(
                    self._store, self._evaluate, rules, provider, reads, now
                )
                if armed:
                    await self._store.save_rule_states(armed)
                    self._remember(armed)
                await self._commit(resolved)
        read = asked if asked is not None else {o.key.resource_id for o in fetched.observations}
        backoff.fetched(
            dict.fromkeys(r for r in read if r not in fetched.failures and r not in fetched.skipped),
            fetched.failures,
            now,
        )
        if asked is None:
            tally.skipped += len(fetched.skipped - read)
        tally.fetched(fetched)  # after the deferred checks; failures are named in the poll's log line
        tally.changed += len(results)
        tally.events += sum(len(r.events) for r in results)

    async def _commit(self, results: list[PollResult], fence: Fence | None = None) -> None:
        """Group commit: the results that arrived together in one transaction. Should that fail, each
        result is committed alone, so one bad result cannot take the others down with it (it is read
        again by the next poll: nothing is lost).

        A poll cancelled at shutdown stops at once while it fetches (a read loses nothing), but a
        commit it has begun runs to its end first, with the mirrors updated to match."""
        if not results:
            return
        await finish_before_cancel(self._commit_now(results, fence))

    async def _commit_now(self, results: list[PollResult], fence: Fence | None = None) -> None:
        lease = self._handoff.lease_fresh(results) if self._handoff is not None else None
        to_commit = list(lease.results) if lease is not None else results
        committed: list[PollResult] = []
        try:
            committed = await self._commit_fresh(to_commit, fence)
        except errors.FencedOut:
            raise  # the lease is another replica's: so is every result of this commit
        except errors.StoreError:
            if len(to_commit) == 1:
                raise
            committed = await self._commit_each(to_commit, fence)
        finally:
            if lease is not None:
                self._handoff.hand_over(lease, committed)  # type: ignore[union-attr]  # set with lease
        if self._metrics is not None:
            self._metrics.committed(committed)
        self._remember(st for r in committed for st in r.rule_states)
        self._evaluate.flaps.remember(st for r in committed for st in r.flaps)
        for r in committed:
            k = r.snapshot.key
            known = self._digests.get((k.provider, k.source))
            if known is not None:
                known[k.resource_id] = digest64(r.snapshot.digest)
        if self._handoff is None and any(r.deliveries for r in committed):
            self._on_committed()

    async def _commit_fresh(self, results: list[PollResult], fence: Fence | None = None) -> list[PollResult]:
        """Commit, leaving out the results another writer (a replica) committed first: their
        transaction rolled back, and the rest is committed again without them. What they would have
        written is forgotten here, so the next poll reads those resources from the store again."""
        todo = results
        while todo:
            try:
                if fence is None:  # polls: the compare-and-swap alone
                    await self._store.commit(todo)
                else:
                    await self._store.commit(todo, fence=fence)
                return todo
            except errors.CommitConflict as conflict:
                lost = set(conflict.keys)
                self._forget(lost)
                if self._metrics is not None:
                    self._metrics.conflicted(sum(1 for r in todo if r.snapshot.key in lost))
                log.info("poll.conflict", resources=len(lost), first=str(next(iter(lost), "")))
                kept = [r for r in todo if r.snapshot.key not in lost]
                if len(kept) == len(todo):  # named nothing of ours: do not loop
                    raise
                todo = kept
        return []

    def _forget(self, keys: AbstractSet[object]) -> None:
        """Drop what this replica believed about these resources (another one wrote them)."""
        for k in keys:
            if isinstance(k, ResourceKey):
                self._digests.get((k.provider, k.source), {}).pop(k.resource_id, None)
                if k.source == HEALTH_SOURCE:
                    self._health_snapshots.pop(k.provider, None)
                    self._health_stale.add(k.provider)

    async def _commit_each(self, results: list[PollResult], fence: Fence | None = None) -> list[PollResult]:
        committed: list[PollResult] = []
        first: errors.StoreError | None = None
        for r in results:
            try:
                await self._commit_fresh([r], fence)
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
        for source in fetched.complete_sources | fetched.window_sources:
            by_source.setdefault(source, [])
        silences_fresh = False
        for source, observations in by_source.items():
            known = await self._known_digests(provider, source)
            appears = False
            if source in fetched.complete_sources or source in fetched.window_sources:
                # A failed or skipped resource is still there: only its read is missing.
                kept = fetched.failures.keys() | fetched.skipped
                window = source in fetched.window_sources
                listing = complete_listing(
                    provider, source, observations, known, now, kept=kept, window=window
                )
                observations, appears = listing.observations, listing.appears
                if listing.marker is not None:
                    results.append(listing.marker)
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
                result = self._evaluate.observe(
                    obs,
                    snapshot,
                    rules,
                    appears=appears,
                    end_watch=end,
                    digest=digest,
                    start_watch=fetched.start_watches.get(obs.key.resource_id),
                )
                if result is not None:
                    results.append(result)
        return results

    async def observe_internal(self, key: ResourceKey, state: dict[str, Any]) -> None:
        """Run one of the bridge's own resources (`bridge.channel`) through diff, rules and the outbox."""
        obs = Observation(key=key, state=state, observed_at=self._clock.now())
        async with self._lock:
            await self._refresh_silences(obs.observed_at)
            snapshot = await self._store.get_snapshot(key)
            result = self._evaluate.observe(obs, snapshot, self._rulebook.current)
            if result is not None:
                await self._commit([result])

    async def tick(self, fence: Fence | None = None) -> int:
        """End the holds and send the reminders that are due now; returns how many notified.

        With `fence` (replicas: the `timers` lease), the commit lands only while this replica still
        holds that lease: a tick that paused past it raises FencedOut and writes nothing."""
        now = self._clock.now()
        if self._rulebook.current is not self._rules_seen:
            await self._forget_removed_rules()
        if self._shared:  # another replica may have started, moved or ended a timer
            self._evaluate.replace_all(await self._store.list_rule_states())
            self._evaluate.flaps.replace_all(await self._store.list_flap_states())
        due = self.next_due()
        if due is None or due > now:
            return 0
        async with self._lock:
            await self._refresh_silences(now)
            # Counting flap states whose window passed are forgotten: no notice, no snapshot write.
            gone = flapping.expired(self._evaluate.flaps, self._rulebook.current, now)
            if gone:
                await self._store.save_flap_states(gone)
                self._evaluate.flaps.remember(gone)
            timers = self._evaluate.due_now(now, TICK_LIMIT)
            settling = self._evaluate.flaps.due_now(now, TICK_LIMIT)
            keys = [*timers, *(k for k in settling if k not in timers)]
        fired = 0
        # At most TICK_LIMIT timers a tick (the rest: the next ticks), in slices, the lock released
        # between them: a fleet armed by one poll comes due at once (250,000 stale timers held the
        # lock 36 s in one piece, bench/stale.py), and polls must not wait that long. Each slice
        # takes the states as they are then (a poll in between may have moved one).
        for start in range(0, len(keys), SLICE):
            async with self._lock:
                rules = self._rulebook.current
                todo = [
                    (k, self._evaluate.due_of(k, now), self._evaluate.flaps.due_of(rules, k, now))
                    for k in keys[start : start + SLICE]
                ]
                todo = [(k, st, fl) for k, st, fl in todo if st or fl]
                snapshots = await self._snapshots_of([k for k, _, _ in todo])
                results = []
                for key, states, flaps in todo:
                    result = self._evaluate.due(key, snapshots.get(key), states, rules, now, flaps)
                    if result is not None:
                        results.append(result)
                await self._commit(results, fence)
            fired += sum(len(r.events) for r in results)
        return fired

    async def _snapshots_of(self, keys: list[ResourceKey]) -> dict[ResourceKey, Snapshot]:
        """The stored snapshots of these resources, one read per (provider, source)."""
        by_source: dict[tuple[str, str], list[str]] = defaultdict(list)
        for k in keys:
            by_source[(k.provider, k.source)].append(k.resource_id)
        out: dict[ResourceKey, Snapshot] = {}
        for (provider, source), ids in by_source.items():
            for snap in (await self._store.get_snapshots_by_id(provider, source, ids)).values():
                out[snap.key] = snap
        return out

    async def acknowledge(self, req: AckRequest) -> RuleState:
        """Acknowledge or snooze a firing (#14): stored with its trace, mirrored here; the timers see
        it from the next tick. Raises AckRefused when no open firing matches."""
        async with self._lock:
            if self._shared:  # the firing may be another replica's: read what is stored now
                self._evaluate.replace_all(await self._store.list_rule_states())
            if req.provider is not None and req.source is not None:  # a link: one lookup
                key = ResourceKey(provider=req.provider, source=req.source, resource_id=req.resource_id)
                known = self._evaluate.state_of(req.rule_id, key)
                candidates = [known] if known is not None else []
            else:
                candidates = self._evaluate.states
            state, trace = acking.apply(candidates, req, self._clock.now())
            await self._store.record_ack(state, trace)
            self._remember([state])
        log.info(
            "rule.acknowledged" if req.action == "ack" else "rule.snoozed",
            rule=state.rule_id,
            resource=str(state.key),
            by=req.by,
            until=state.snoozed_until.isoformat() if req.action == "snooze" and state.snoozed_until else None,
        )
        return state

    async def _forget_removed_rules(self) -> None:
        """After a reload: drop the timers of rules that no longer exist (kept ones continue)."""
        rules = self._rulebook.current
        known = {st.rule_id for st in self._evaluate.states} | {f.rule_id for f in self.flap_states}
        gone = sorted(known - rules.by_id.keys())
        if gone:
            async with self._lock:
                await self._store.delete_rule_states(gone)
                self._remember(
                    replace(st, phase="idle", last_fired_at=None)
                    for st in self._evaluate.states
                    if st.rule_id in gone
                )
                self._evaluate.flaps.remember(
                    FlapState(rule_id=f.rule_id, key=f.key) for f in self.flap_states if f.rule_id in gone
                )
            log.info("rules.timers_dropped", rules=gone)
        self._rules_seen = rules

    def _health_results(self, provider: str, now: datetime) -> list[PollResult]:
        """`bridge.provider` is a resource like any other: rules can alert on it."""
        key = ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
        obs = Observation(key=key, state=self.health.get(provider).as_state(now), observed_at=now)
        result = self._evaluate.observe(obs, self._health_snapshots.get(provider), self._rulebook.current)
        if result is None:
            return []
        self._health_snapshots[provider] = result.snapshot
        return [result]
