"""The timer loop: ends rule holds (`for`), sends reminders (`repeat`) and queues due digests.

Timers are rows in the store (see `rules/state.py`); this loop only asks the poller, once a second,
to act on the ones that are due. A second of resolution is plenty for holds measured in minutes,
and a restart loses nothing: the rows are read back by `Poller.load_state`.

Replicas (a shared store): one replica ticks, the holder of the lease `timers`. One lease for all
timers, not one per provider: a tick is cheap (it reads the rule states and commits only what is
due), digests are per channel rather than per provider, and one holder keeps "fires exactly once"
simple to reason about; the heavy work (polls) is what the watch-group leases spread. The tick's
commits are fenced by the lease's token: a replica that paused mid-tick past its lease, while
another took the lease over and fired, has its late commit refused (`FencedOut`) instead of firing
the same hold a second time. A dead holder's timers move to another replica within one lease
period, like its watch groups.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bridge.errors import FencedOut, StoreError
from bridge.lifecycle import LoopFn
from bridge.metrics import Metrics
from bridge.notify.batches import Digester
from bridge.poll.cycle import Poller
from bridge.poll.ownership import PollOwnership

log = structlog.get_logger(__name__)

TICK_SECONDS = 1.0
TIMERS_LEASE = "timers"


async def tick_timers(
    poller: Poller,
    digester: Digester | None = None,
    *,
    ownership: PollOwnership | None = None,
    metrics: Metrics | None = None,
) -> int | None:
    """One tick: the rule timers, then the digests. With `ownership` (replicas), only while this
    replica holds the `timers` lease, and fenced by it. Returns how many events the timers caused,
    or None when another replica holds the lease (or a late commit of ours was fenced out)."""
    fence = None
    if ownership is not None:
        fence = await ownership.fence(TIMERS_LEASE)
        if fence is None:
            return None
    try:
        fired = await poller.tick(fence)
        if digester is not None:
            await digester.tick(fence)
    except FencedOut as exc:
        # Another replica took the lease while this tick ran: its tick stands, ours wrote nothing.
        log.warning("timers.fenced", lease=exc.lease, token=exc.token)
        if metrics is not None:
            metrics.fenced("timers")
        if ownership is not None:
            ownership.forget(TIMERS_LEASE)
        return None
    return fired


def timer_loop(
    poller: Poller,
    digester: Digester | None = None,
    *,
    every: float = TICK_SECONDS,
    ownership: PollOwnership | None = None,
    metrics: Metrics | None = None,
) -> LoopFn:
    """A `Service` body that ticks the poller's rule timers (and the digests) until stopped."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                fired = await tick_timers(poller, digester, ownership=ownership, metrics=metrics)
                if fired:
                    log.info("timers.fired", events=fired)
            except StoreError as exc:  # the store is down: keep the timers, try again next tick
                log.warning("timers.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    return run
