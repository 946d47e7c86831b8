"""The polling timetable: APScheduler 3.x, one job per provider watch group.

`coalesce` folds missed runs into one, `max_instances=1` forbids overlapping polls of the same group
(no duplicates from overlapping polls), and first runs are jittered so a restart does not hit every
provider at the same instant. On a store shared by replicas, a by-id group is split into
`[cluster] shards` jobs (one lease each, bridge/poll/ownership.py), so replicas share one provider's
fleet; a listing group (Podero `discover`, Realto's session and command-window listings, WattShift
homes) stays one job, since a listing is read whole. The timetable never moves for a fault: a
`Retry-After` or a failing resource is the poller's back-off (bridge/poll/backoff.py, on the
injected clock), which asks less, or nothing, at the runs it covers (#18: a deferred job once
silenced a provider for 28 hours).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bridge.poll.cycle import Poller
from bridge.poll.ownership import PollOwnership
from bridge.providers.base import Provider

log = structlog.get_logger(__name__)

MAX_FIRST_RUN_JITTER = 5.0  # seconds


def job_id(provider: str, group: str, shard: tuple[int, int] | None = None) -> str:
    return f"poll:{provider}:{group}" if shard is None else f"poll:{provider}:{group}:{shard[0]}/{shard[1]}"


class PollScheduler:
    """Owns the AsyncIOScheduler and the set of polls in flight (drained on shutdown)."""

    def __init__(
        self,
        poller: Poller,
        providers: Sequence[Provider],
        *,
        rng: random.Random | None = None,
        ownership: PollOwnership | None = None,
        shards: int = 1,
    ) -> None:
        self._poller = poller
        # With replicas: a run polls only when this replica holds the group's lease (ownership.py).
        self._ownership = ownership
        self._shards = shards if ownership is not None else 1  # one process never shards
        self._providers = list(providers)
        self._rng = rng or random.Random()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._in_flight: set[asyncio.Task[object]] = set()
        self._stopping = False

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def plan(self, now: datetime) -> list[dict[str, object]]:
        """The jobs to add: kept separate from `start` so the timetable itself can be tested."""
        jobs: list[dict[str, object]] = []
        for provider in self._providers:
            for group in provider.watch_groups():
                interval = group.interval.total_seconds()
                n = self._shards if group.by_id else 1
                shards: list[tuple[int, int] | None] = [(k, n) for k in range(n)] if n > 1 else [None]
                for shard in shards:
                    jitter = self._rng.uniform(0, min(MAX_FIRST_RUN_JITTER, interval))
                    jobs.append(
                        {
                            "id": job_id(provider.name, group.name, shard),
                            "provider": provider,
                            "group": group.name,
                            "shard": shard,
                            "interval": interval,
                            "first_run": now + timedelta(seconds=jitter),
                        }
                    )
        return jobs

    def start(self) -> None:
        now = datetime.now(UTC)
        for job in self.plan(now):
            self._scheduler.add_job(
                self._run,
                IntervalTrigger(seconds=float(job["interval"]), timezone=UTC),  # type: ignore[arg-type]
                id=str(job["id"]),
                args=(job["provider"], job["group"], job["shard"]),
                next_run_time=job["first_run"],
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
                replace_existing=True,
            )
        self._scheduler.start()
        log.info("scheduler.started", jobs=len(self._scheduler.get_jobs()))

    async def _run(self, provider: Provider, group: str, shard: tuple[int, int] | None = None) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
        try:
            if self._ownership is not None and not await self._ownership.owns(provider.name, group, shard):
                return  # another replica polls this group (or shard)
            # Back-off is the poller's (bridge/poll/backoff.py): the timetable never moves for a fault.
            if shard is None:  # as before sharding: a wrapped `poll` (bench/scale.py) keeps working
                await self._poller.poll(provider, group)
            else:
                await self._poller.poll(provider, group, shard=shard)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            # Cancelled by `stop`: the poll committed nothing it had not finished, and the next start
            # reads again. Returning (not raising) keeps APScheduler from logging it as a crash.
            log.info("poll.cancelled", provider=provider.name, group=group)
            return
        except Exception:
            # A bug in one poll must not kill the timetable; it is logged with its traceback.
            log.exception("poll.crashed", provider=provider.name, group=group)
            return
        finally:
            if task is not None:
                self._in_flight.discard(task)

    async def stop(self, *, drain: float) -> None:
        """No new polls; the ones in flight are cancelled at once. A poll only reads until it commits,
        so waiting for a slow provider would hold the shutdown for nothing (a process manager's stop
        timeout is often 10 s); a commit already begun finishes first (`Poller._commit`), bounded by
        `drain`."""
        if not self._scheduler.running:
            return
        self._stopping = True
        self._scheduler.pause()
        in_flight = set(self._in_flight)
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.wait(in_flight, timeout=drain)
        self._scheduler.shutdown(wait=False)
        # APScheduler 3 runs the shutdown via call_soon_threadsafe: let it happen before we return.
        await asyncio.sleep(0)
