"""Retention (#14): events, deliveries with their attempts, and traces older than their configured
age are deleted, so the store stays bounded however long the bridge runs.

Each delete is one short transaction of at most `batch` rows (oldest first), and the pruner yields
to the event loop between them, so polls and deliveries commit in between instead of waiting for a
long purge. What the outbox still owes (pending, held) and the events it belongs to are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import structlog

from bridge.clock import Clock
from bridge.config.models import RetentionConfig
from bridge.errors import StoreError
from bridge.lifecycle import LoopFn
from bridge.store.base import PRUNE_ORDER, TOMBSTONE_AGE, PruneKind, Store

log = structlog.get_logger(__name__)

MAX_BATCHES = 1000  # per kind per run: a first run over a huge backlog spreads over several runs


class Pruner:
    def __init__(self, store: Store, config: RetentionConfig, *, clock: Clock) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self.batches = 0  # deletes issued (for tests and the bench)

    def age(self, kind: PruneKind) -> timedelta:
        c = self._config
        return {"traces": c.traces, "attempts": c.deliveries, "deliveries": c.deliveries}.get(kind, c.events)

    async def run_once(self) -> dict[str, int]:
        """One pass over every kind, in dependency order; returns rows deleted per kind."""
        now = self._clock.now()
        gone: dict[str, int] = {}
        for kind in PRUNE_ORDER:
            before, total = now - self.age(kind), 0
            for _ in range(MAX_BATCHES):
                n = await self._store.prune(kind, before=before, limit=self._config.batch)
                self.batches += 1
                total += n
                if n < self._config.batch:
                    break
                await asyncio.sleep(0)  # let a poll's or a delivery's commit in between
            gone[kind] = total
        # A shared store's tombstones of deleted rule and flap states (`Store.state_changes`): an
        # hour is enough for every replica to have read them; one that has not reads in full.
        tombstones = await self._store.prune_tombstones(TOMBSTONE_AGE)
        if any(gone.values()) or tombstones:
            log.info("retention.pruned", **gone, tombstones=tombstones)
        return gone


def retention_loop(pruner: Pruner, *, every: float) -> LoopFn:
    """A `Service` body: prune now, then every `every` seconds, until stopped."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await pruner.run_once()
            except StoreError as exc:  # the store is down: try again next time
                log.warning("retention.failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    return run
