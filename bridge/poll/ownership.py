"""Which replica polls a watch group: leases in the store, so replicas on one database split the
groups between them without talking to each other.

Every replica's timetable (APScheduler) fires for every group; before it polls, a run asks for the
group's lease (`poll:PROVIDER:GROUP`). The holder renews it at each poll and from a heartbeat
loop every third of a lease period; the others skip the run. A dead replica's heartbeat stops, its
leases expire one `lease_period` later, and the next run of another replica takes them over (with a
new fencing token). A clean stop releases them at once. On SQLite (one process) every lease is this
replica's, so the behaviour is the single process's.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from bridge.clock import Clock
from bridge.errors import StoreError
from bridge.lifecycle import LoopFn
from bridge.store.base import Fence, Store

log = structlog.get_logger(__name__)


def lease_name(provider: str, group: str) -> str:
    return f"poll:{provider}:{group}"


class PollOwnership:
    """This replica's leases on watch groups (the store holds the truth; `held` mirrors it)."""

    def __init__(self, store: Store, clock: Clock, *, replica_id: str, period: timedelta) -> None:
        self._store = store
        self._clock = clock
        self.replica_id = replica_id
        self.period = period
        self.held: dict[str, int] = {}  # lease name → fencing token, as of the last ask
        self.takeovers = 0  # leases this replica took from another holder (or first took)

    async def owns(self, provider: str, group: str) -> bool:
        """Take or renew the group's lease; False while another live replica holds it. A store that
        does not answer owns nothing: no poll whose result could not be committed anyway."""
        name = lease_name(provider, group)
        try:
            token = await self._store.acquire_lease(name, self.replica_id, self._clock.now(), self.period)
        except StoreError as exc:
            log.warning("lease.failed", lease=name, error=str(exc))
            self.held.pop(name, None)
            return False
        if token is None:
            if self.held.pop(name, None) is not None:
                log.warning("lease.lost", lease=name, replica=self.replica_id)
            return False
        if self.held.get(name) != token:
            self.takeovers += 1
            log.info("lease.taken", lease=name, replica=self.replica_id, token=token)
        self.held[name] = token
        return True

    async def fence(self, name: str) -> Fence | None:
        """Take or renew lease `name` (not a watch group's: e.g. `timers`, bridge/poll/timers.py) and
        return the fence its holder's writes carry; None while another live replica holds it or the
        store does not answer. Renewed by the heartbeat and released at a clean stop like the rest."""
        try:
            token = await self._store.acquire_lease(name, self.replica_id, self._clock.now(), self.period)
        except StoreError as exc:
            log.warning("lease.failed", lease=name, error=str(exc))
            self.held.pop(name, None)
            return None
        if token is None:
            if self.held.pop(name, None) is not None:
                log.warning("lease.lost", lease=name, replica=self.replica_id)
            return None
        if self.held.get(name) != token:
            self.takeovers += 1
            log.info("lease.taken", lease=name, replica=self.replica_id, token=token)
        self.held[name] = token
        return Fence(name, self.replica_id, token)

    def forget(self, name: str) -> None:
        """A write under lease `name` was fenced out: another replica holds it now."""
        if self.held.pop(name, None) is not None:
            log.warning("lease.lost", lease=name, replica=self.replica_id)

    async def heartbeat(self) -> None:
        """Extend every lease this replica holds; what the store no longer lists is forgotten."""
        now = self._clock.now()
        await self._store.renew_leases(self.replica_id, now, self.period)
        still = set(await self._store.held_leases(self.replica_id, now))
        for name in [n for n in self.held if n not in still]:
            log.warning("lease.lost", lease=name, replica=self.replica_id)
            del self.held[name]

    async def release(self) -> None:
        """Give every lease up (a clean stop): the other replicas take over at their next run."""
        names, self.held = sorted(self.held), {}
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
