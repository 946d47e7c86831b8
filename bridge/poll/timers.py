"""The timer loop: ends rule holds (`for`), sends reminders (`repeat`) and queues due digests.

Timers are rows in the store (see `rules/state.py`); this loop only asks the poller, once a second,
to act on the ones that are due. A second of resolution is plenty for holds measured in minutes,
and a restart loses nothing: the rows are read back by `Poller.load_state`.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from bridge.errors import StoreError
from bridge.lifecycle import LoopFn
from bridge.notify.batches import Digester
from bridge.poll.cycle import Poller

log = structlog.get_logger(__name__)

TICK_SECONDS = 1.0


def timer_loop(poller: Poller, digester: Digester | None = None, *, every: float = TICK_SECONDS) -> LoopFn:
    """A `Service` body that ticks the poller's rule timers (and the digests) until stopped."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                fired = await poller.tick()
                if fired:
                    log.info("timers.fired", events=fired)
                if digester is not None:
                    await digester.tick()
            except StoreError as exc:  # the store is down: keep the timers, try again next tick
                log.warning("timers.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    return run
