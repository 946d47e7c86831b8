"""One poll cycle: provider → observations → evaluate → one store commit → wake delivery.

Like Home Assistant's DataUpdateCoordinator without HA: a failed fetch changes nothing and only
updates provider health; a successful one commits each resource's new snapshot together with the
events it caused and their deliveries (DESIGN.md "one transaction per poll result"). What an
observation changes is decided by `evaluate.Evaluator`; what a listing means, by `listing`.
This module is the poll itself; the poller's state and mirrors are `mirrors.py`, its commits
`commits.py`, and its rule timers (ticks, acknowledgements) `ticks.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Set as AbstractSet
from datetime import datetime, timedelta
from typing import Any

import structlog

from bridge import errors
from bridge.config.models import DEFAULT_RETRY_AFTER_CAP
from bridge.model import (
    HEALTH_SOURCE,
    Observation,
    PollResult,
    ResourceKey,
    Watch,
)
from bridge.poll import stale_reads
from bridge.poll.backoff import ProviderBackoff
from bridge.poll.diff import digest64, meaningful_digest
from bridge.poll.fetch_pool import PageRequest
from bridge.poll.listing import complete_listing
from bridge.poll.mirrors import SLICE
from bridge.poll.summary import PollSummary, Tally
from bridge.poll.ticks import PollTicks
from bridge.providers.base import FetchResult, Provider

log = structlog.get_logger(__name__)

LANES = 2  # slices in progress at once (fetching, diffing, committing), each lane one after another


class Poller(PollTicks):
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

    def _health_results(self, provider: str, now: datetime) -> list[PollResult]:
        """`bridge.provider` is a resource like any other: rules can alert on it."""
        key = ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
        obs = Observation(key=key, state=self.health.get(provider).as_state(now), observed_at=now)
        result = self._evaluate.observe(obs, self._health_snapshots.get(provider), self._rulebook.current)
        if result is None:
            return []
        self._health_snapshots[provider] = result.snapshot
        return [result]
