"""Which replica polls a watch group: leases in the store, so replicas on one database split the
groups between them without talking to each other.

Every replica's timetable (APScheduler) fires for every group; before it polls, a run asks for the
group's lease (`poll:PROVIDER:GROUP`). The holder renews it at each poll and from a heartbeat
loop every third of a lease period; the others skip the run. A dead replica's heartbeat stops, its
leases expire one `lease_period` later, and the next run of another replica takes them over (with a
new fencing token). A clean stop releases them at once. On SQLite (one process) every lease is this
replica's, so the behaviour is the single process's.

A sharded group (a by-id group split by `[cluster] shards`, bridge/shards.py) has one lease per
shard, `poll:PROVIDER:GROUP:K/N`, and each replica holds at most its fair quota of them (N shards
split evenly among the provider's live members, bridge/poll/membership.py): a replica over its
quota gives a shard up at that shard's run (skipping it: the shard waits for its new holder's next
run, never polled twice in one interval), a replica under it takes free shards. So a replica that
joins gets its part within one poll interval of being seen, and a dead one's shards are taken by
the others once its leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from bridge.clock import Clock
from bridge.errors import StoreError
from bridge.lifecycle import LoopFn
from bridge.poll.membership import Membership
from bridge.store.base import Fence, Store

log = structlog.get_logger(__name__)


def lease_name(provider: str, group: str, shard: tuple[int, int] | None = None) -> str:
    """`poll:PROVIDER:GROUP`, or `poll:PROVIDER:GROUP:K/N` for shard K of N."""
    return f"poll:{provider}:{group}" if shard is None else f"poll:{provider}:{group}:{shard[0]}/{shard[1]}"


class PollOwnership:
    """This replica's leases on watch groups (the store holds the truth; `held` mirrors it)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        replica_id: str,
        period: timedelta,
        membership: Membership | None = None,
    ) -> None:
        self._store = store
        # The provider's live replicas: their shares of its limits, and each one's quota of shards.
        self.membership = membership
        self._clock = clock
        self.replica_id = replica_id
        self.period = period
        self.held: dict[str, int] = {}  # lease name → fencing token, as of the last ask
        self.takeovers = 0  # leases this replica took from another holder (or first took)

    async def owns(self, provider: str, group: str, shard: tuple[int, int] | None = None) -> bool:
        """Take or renew the group's (or shard's) lease; False while another live replica holds it,
        or when this replica holds its quota of the group's shards. A store that does not answer
        owns nothing: no poll whose result could not be committed anyway."""
        name = lease_name(provider, group, shard)
        try:
            if shard is not None and not await self._within_quota(provider, group, shard, name):
                return False
        except StoreError as exc:
            log.warning("lease.failed", lease=name, error=str(exc))
            self.held.pop(name, None)
            return False
        return await self._take(name) is not None

    async def _take(self, name: str) -> int | None:
        """Take or renew lease `name`: its fencing token, or None (another holder, or no store)."""
        try:
            token = await self._store.acquire_lease(name, self.replica_id, self._clock.now(), self.period)
        except StoreError as exc:
            log.warning("lease.failed", lease=name, error=str(exc))
            self.held.pop(name, None)
            return None
        if token is None:
            self.forget(name)
            return None
        if self.held.get(name) != token:
            self.takeovers += 1
            log.info("lease.taken", lease=name, replica=self.replica_id, token=token)
        self.held[name] = token
        return token

    async def _within_quota(self, provider: str, group: str, shard: tuple[int, int], name: str) -> bool:
        """May this replica hold `name` (a shard of `group`)? Gives it up when over quota."""
        if self.membership is None:
            return True
        prefix = lease_name(provider, group) + ":"
        mine = sum(n.startswith(prefix) for n in self.held)
        quota = self.membership.quota(provider, shard[1])
        if name in self.held:
            if mine <= quota:
                return True
            # Over quota (a replica joined): this shard goes to a replica under its quota.
            await self._store.release_leases(self.replica_id, [name])
            del self.held[name]
            log.info("lease.shed", lease=name, replica=self.replica_id, held=mine - 1, quota=quota)
            return False
        if mine < quota:
            return True
        # At quota: unless a member has gone since the last look (then the quota grows now, not at
        # the next heartbeat, and a dead or stopped replica's shard is taken at this run).
        await self.membership.refresh_if_stale()
        return mine < self.membership.quota(provider, shard[1])

    async def fence(self, name: str) -> Fence | None:
        """Take or renew lease `name` (not a watch group's: e.g. `timers`, bridge/poll/timers.py) and
        return the fence its holder's writes carry; None while another live replica holds it or the
        store does not answer. Renewed by the heartbeat and released at a clean stop like the rest."""
        token = await self._take(name)
        return None if token is None else Fence(name, self.replica_id, token)

    def forget(self, name: str) -> None:
        """Another replica holds lease `name` now (it refused this one, or fenced out a write)."""
        if self.held.pop(name, None) is not None:
            log.warning("lease.lost", lease=name, replica=self.replica_id)

    async def heartbeat(self) -> None:
        """Extend every lease this replica holds; what the store no longer lists is forgotten. The
        provider members (and so the limit shares and shard quotas) are read again."""
        now = self._clock.now()
        await self._store.renew_leases(self.replica_id, now, self.period)
        still = set(await self._store.held_leases(self.replica_id, now))
        for name in [n for n in self.held if n not in still]:
            log.warning("lease.lost", lease=name, replica=self.replica_id)
            del self.held[name]
        if self.membership is not None:
            await self.membership.heartbeat()

    async def release(self) -> None:
        """Give every lease up (a clean stop): the other replicas take over at their next run, and
        take this replica's share of the provider limits at their next heartbeat."""
        names, self.held = sorted(self.held), {}
        if self.membership is not None:
            names += self.membership.leases
        with contextlib.suppress(StoreError):
            await self._store.release_leases(self.replica_id, names)

    def loop(self) -> LoopFn:
        """A `Service` body: heartbeats every third of a lease period until stopped, then releases."""

        async def run(stop: asyncio.Event) -> None:
            every = self.period.total_seconds() / 3
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=every)
                if stop.is_set():
                    break
                try:
                    await self.heartbeat()
                except StoreError as exc:  # the store is down: leases run out, polls hold
                    log.warning("lease.heartbeat_failed", error=str(exc))
            await self.release()

        return run
