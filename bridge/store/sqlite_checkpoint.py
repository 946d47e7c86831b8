"""WAL checkpoints of the SQLite store off the commit path: on a connection and a thread of their own.

SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages: that commit
copies the WAL into the database file and syncs it before it returns. A poll result of 20 events
writes ~80 pages (each event and delivery row fills a page), so every ~5th commit paid 4-6 ms for
it: the latency tail of #16 (bench/README.md, "checkpoint"). Here the writer's automatic checkpoint
is off and a PASSIVE checkpoint (it never blocks the writer, or is blocked by it) runs on its own
connection in a worker thread at most once per `interval_s` while the store is being written. An
idle store starts no checkpoint at all; closing the store's connection checkpoints what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from bridge.clock import Clock

log = structlog.get_logger(__name__)

# ~SQLite's own pace at the rates it matters for: 1,000 events/s writes ~16 MB of WAL a second, and
# 1,000 pages (its default) fill in ~250 ms. The WAL file grows to about one interval's writes.
CHECKPOINT_INTERVAL_S = 0.1


class Checkpointer:
    """`wrote()` after every write transaction; `close()` before the store's connection closes."""

    def __init__(self, path: Path, *, clock: Clock, interval_s: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._clock = clock
        self._interval = timedelta(seconds=interval_s)
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._job: asyncio.Future[None] | None = None  # the checkpoint running in its thread
        self._dirty = False  # written since the running checkpoint began
        self._last_began: datetime | None = None
        self._closed = False
        self._failing = False  # the last checkpoint failed (logged once until one succeeds)
        self.checkpoints = 0  # PASSIVE checkpoints run (the tests and the benchmark read it)

    def wrote(self) -> None:
        """A write transaction committed: checkpoint it within `interval_s`."""
        self._dirty = True
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name="store:wal-checkpoint")

    async def _run(self) -> None:
        try:
            while self._dirty and not self._closed:
                if self._last_began is not None:
                    # Bounded by the interval: a wall clock stepped back must not stop checkpoints.
                    wait = min(self._interval, self._last_began + self._interval - self._clock.now())
                    if wait > timedelta(0):
                        await self._clock.sleep(wait.total_seconds())  # close() cancels it
                self._dirty = False
                self._last_began = self._clock.now()
                self._job = asyncio.ensure_future(asyncio.to_thread(self._checkpoint))
                await asyncio.shield(self._job)  # a cancelled wait leaves the thread's work running
                self._job = None
        finally:
            self._task = None

    def _checkpoint(self) -> None:
        """In a worker thread (one at a time): copy what the WAL holds into the database file."""
        try:
            if self._conn is None:
                # Its own connection: a checkpoint on the writer's would queue behind its commits.
                self._conn = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if self._failing:
                self._failing = False
                log.info("store.checkpoint_recovered", path=str(self._path))
        except sqlite3.Error as exc:
            # Nothing is lost: the WAL keeps every commit until a checkpoint succeeds (it grows).
            if not self._failing:
                self._failing = True
                log.warning("store.checkpoint_failed", path=str(self._path), error=str(exc))

    async def settled(self) -> None:
        """Wait until no checkpoint is running or waiting its turn (the tests use it)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def close(self) -> None:
        """Stop checkpointing: wait for the one running, close its connection (a store opened again
        checkpoints again: nothing writes between its connection's close and its next open)."""
        self._closed = True
        task, job = self._task, self._job
        if task is not None:
            task.cancel()  # wakes a wait between checkpoints
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if job is not None:  # a checkpoint in its thread finishes before its connection closes
            await job
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.to_thread(conn.close)
        self._closed, self._dirty = False, False
