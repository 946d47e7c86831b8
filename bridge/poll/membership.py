"""Which replicas run each provider now, and this replica's share of the provider's limits.

A provider's `max_requests_per_second` and `max_concurrency` are the credential's, whatever the
number of processes using it. Each replica holds one membership lease per provider it runs,
`member:PROVIDER:REPLICA` (the same `leases` table as the poll leases, renewed by the same
heartbeat, released by a clean stop, expired one lease period after a replica died), and runs with
1/N of the limits, N the provider's live members at its last look (as fetch workers split a
replica's limits, bridge/poll/fetch_pool.py). The members are read again at every heartbeat (a
third of a lease period), and at a shard run that its quota would skip once another member's lease
may have run out (so a dead replica's shards are taken at the first run after its expiry) or a
tenth of a lease period after the last read (a replica that stopped cleanly).

Why shares and not a token bucket in the database: a shared bucket is one row every request of
every replica updates (a round trip and a row lock per request, all replicas queueing on one
row: ~1,000 takes/s at most, 10-26 ms each, ~100 µs of CPU each, bench/shared_bucket.py), while a
share costs nothing per request and one small query per heartbeat. The price is
its bounds: a replica that joins takes its share at once, the others lower theirs at their next
heartbeat, so for up to a third of a lease period the sum may reach (1 + 1/N) of the limit; a
replica that dies leaves its share unused until its lease expires (under the limit, never over).
The sharded poll leases (`bridge.shards.fair_quota`) give each member an even part of the work,
which is what makes even shares fit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from bridge.clock import Clock
from bridge.poll.fetch_pool import FetchPool
from bridge.providers.base import Provider
from bridge.providers.http import ProviderHttp
from bridge.shards import fair_quota
from bridge.store.base import Store

log = structlog.get_logger(__name__)

PREFIX = "member:"


def member_lease(provider: str, replica: str) -> str:
    return f"{PREFIX}{provider}:{replica}"


class Membership:
    """The live members of each provider this replica runs (the store holds the truth)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        replica_id: str,
        period: timedelta,
        providers: dict[str, Provider],
        pools: dict[str, FetchPool] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self.replica_id = replica_id
        self.period = period
        self._providers = providers
        self._pools = pools or {}
        self.members: dict[str, list[str]] = {p: [replica_id] for p in providers}
        # The other members' lease expiries as last read: when one has passed, the members are read
        # again before a shard quota leaves a shard alone (a dead replica's shard is taken at once).
        self._expiries: list[datetime] = []
        self._read_at: datetime | None = None

    @property
    def leases(self) -> list[str]:
        return [member_lease(p, self.replica_id) for p in self._providers]

    async def heartbeat(self) -> None:
        """Take or renew this replica's membership of every provider, then look at the members."""
        now = self._clock.now()
        for name in self.leases:
            await self._store.acquire_lease(name, self.replica_id, now, self.period)
        await self.refresh()

    async def refresh_if_stale(self) -> None:
        """Read the members again if one of them may have left since the last read: its lease has
        run out unless renewed meanwhile (a replica that died), or a tenth of a lease period has
        passed (one that stopped cleanly and released its leases). A shard run at its quota asks,
        so the read is rare."""
        now = self._clock.now()
        stale = self._read_at is None or now - self._read_at >= self.period / 10
        if stale or any(at <= now for at in self._expiries):
            await self.refresh()

    async def refresh(self) -> None:
        """Read the live members again and run with the share they leave this replica."""
        now = self._clock.now()
        rows = await self._store.lease_holders(PREFIX, now)
        self._read_at = now
        self._expiries = [at for _, holder, at in rows if holder != self.replica_id]
        for provider in self._providers:
            prefix = f"{PREFIX}{provider}:"
            # This replica counts even when its own lease lapsed (a store hiccup): it still polls.
            members = sorted({h for n, h, _ in rows if n.startswith(prefix)} | {self.replica_id})
            if members != self.members.get(provider):
                log.info("cluster.members", provider=provider, members=members, replica=self.replica_id)
            self.members[provider] = members
            self._apply(provider, len(members))

    def _apply(self, provider: str, n: int) -> None:
        http = getattr(self._providers[provider], "http", None)  # every HTTP provider has one
        if isinstance(http, ProviderHttp):
            http.divide(n)
        pool = self._pools.get(provider)
        if pool is not None:
            pool.replicas = n  # each page tells its worker (bridge/poll/fetch_pool.py)

    def quota(self, provider: str, shards: int) -> int:
        """How many of a group's `shards` this replica may hold (bridge.shards.fair_quota)."""
        return fair_quota(shards, self.members.get(provider, []), self.replica_id)
