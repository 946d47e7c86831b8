"""Group commit of attempt records: every outcome that finishes while a write is in progress goes into
the next one (one transaction, one trip to the store), so a burst records in batches; in a steady
stream, writes are at most one per `window_s`, so a paced 1,000/s records ~10 per transaction."""

from __future__ import annotations

import asyncio
import math

import structlog

from bridge.metrics import Metrics
from bridge.store.base import AttemptOutcome, Store

log = structlog.get_logger("bridge.deliver.worker")

# In a stream (the last write began less than this ago), the next write waits out the rest of it
# and takes everything that finished meanwhile: a write is a trip to SQLite's thread and a
# transaction, ~100 µs of CPU with its wake-ups, which one record per paced delivery paid (#16).
# A lone outcome is written at once; `flush` (idle in tests, stopping) writes at once.
STREAM_WINDOW_S = 0.01


class AttemptLog:
    """Group commit of attempt records, written in the background by one writer task at a time.

    A send frees its slot as soon as the receiver has answered; its outcome joins the queue, and
    every outcome queued while a write is in progress goes into the next one (one transaction).
    Until then the delivery stays leased, so nobody sends it again; a crash before the write lets
    the lease run out and it goes out again with the same webhook-id (at least once). `flush`
    waits until everything queued so far is written: the worker flushes before it reports idle
    or stops.
    """

    def __init__(
        self, store: Store, metrics: Metrics | None = None, *, window_s: float | None = None
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._queue: list[AttemptOutcome] = []
        self._writer: asyncio.Task[None] | None = None
        self._window = STREAM_WINDOW_S if window_s is None else window_s
        self._last_write = -math.inf  # loop time the last write began
        self._hurry: asyncio.Future[None] | None = None  # resolved by the window's end or `flush`
        self._flushing = 0  # callers waiting in `flush`: no window while there are any
        self.refused = 0  # records fenced out: the delivery was claimed again by another worker

    def add(self, outcome: AttemptOutcome) -> None:
        self._queue.append(outcome)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="delivery:attempts")

    async def flush(self) -> None:
        self._flushing += 1
        self._urge()
        try:
            while self._writer is not None:
                # Shielded: a caller cut short (drain timeout) must not cancel a write half done.
                await asyncio.shield(self._writer)
        finally:
            self._flushing -= 1

    def _urge(self, _: object = None) -> None:
        hurry = self._hurry
        if hurry is not None and not hurry.done():
            hurry.set_result(None)

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                wait = self._last_write + self._window - loop.time()
                # In a stream: gather what finishes within the window into this write.
                if wait > 0 and not self._flushing:
                    self._hurry = loop.create_future()
                    timer = loop.call_later(wait, self._urge)
                    try:
                        await self._hurry
                    finally:
                        timer.cancel()
                        self._hurry = None
                self._last_write = loop.time()
                batch, self._queue = self._queue, []
                try:
                    done = await self._store.record_attempts(batch)
                except Exception as exc:  # a store error (or a store closed under us) must not be silent
                    missing, error = {o.attempt.delivery_id for o in batch}, str(exc)
                else:
                    missing, error = set(done.missing), "no such delivery"
                    self._fenced(batch, done.refused)
                for delivery_id in missing:
                    # The lease expires and the delivery is sent again (same webhook-id): at least once.
                    log.error("delivery.record_failed", delivery_id=delivery_id, error=error)
        finally:
            self._writer = None

    def _fenced(self, batch: list[AttemptOutcome], refused: frozenset[str]) -> None:
        """Records the store refused: this worker's claim ran out (a pause, a stalled loop) and
        another one claimed the delivery since; its record stands, this late one is dropped."""
        if not refused:
            return
        self.refused += len(refused)
        if self._metrics is not None:
            self._metrics.fenced("delivery", len(refused))
        for o in batch:
            if o.attempt.delivery_id in refused:
                log.warning(
                    "delivery.record_fenced",
                    delivery_id=o.attempt.delivery_id,
                    attempt=o.attempt.number,
                    claim_token=o.claim_token,
                    outcome=o.status,
                )
