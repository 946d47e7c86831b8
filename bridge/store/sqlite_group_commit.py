"""Group commit of poll results on the SQLite store: results of callers that commit close together
share one transaction and one fsync, and each caller keeps its own all-or-nothing outcome.

Under `synchronous=FULL` every COMMIT syncs the WAL: at 1,000 single-result commits/s that fsync and
the trip to aiosqlite's thread are most of what separates a durable bridge from an in-memory one
(#16). As PostgreSQL's `commit_delay` does, a commit that follows the previous one's start by less
than the window waits out the rest of it and takes every caller queued meanwhile; a lone commit
(none in flight, the last began a window or more ago) goes at once. Inside the shared transaction
each caller's rows are written under their own SAVEPOINT: one caller's conflict, fence refusal or
constraint error rolls back only its rows and is raised to it alone. An await returns only after
the COMMIT holding its rows has returned (durable under FULL).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.clock import Clock
from bridge.errors import CommitConflict, StoreError
from bridge.model import ResourceKey
from bridge.store.base import Fence
from bridge.store.sqlite_conn import SqliteConnection
from bridge.store.sqlite_lease_sql import fence_token

# Measured with bench/delivery.py at 1,000/s (bench/README.md, branch gcommit): 3 ms takes the paced
# stream from ~0.85 fsyncs per notification to ~0.27 and its CPU below Alertmanager's in every run
# (2 ms: ~0.38 and about equal to it; 1 ms: ~0.7, above it); a commit waits at most 3 ms more.
GROUP_WINDOW_S = 0.003

Batches = Sequence[tuple[str, Sequence[tuple[Any, ...]]]]


@dataclass(slots=True)
class _Waiting:
    batches: Batches
    fence: Fence | None
    done: asyncio.Future[None] = field(repr=False)


class GroupCommit:
    """One writer task at a time takes every queued caller into one transaction on `store`'s
    connection (under its lock, so no other statement interleaves).

    A caller cancelled while still queued is left out (nothing of it is written); one cancelled
    after its transaction began may land, as a cancelled hop to aiosqlite's thread always could;
    the others are unaffected either way, since the writer, not the caller, owns the transaction.
    """

    def __init__(self, store: SqliteConnection, *, window_s: float, clock: Clock) -> None:
        self._store = store
        self._window = timedelta(seconds=window_s)
        self._clock = clock
        self._queue: list[_Waiting] = []
        self._writer: asyncio.Task[None] | None = None
        self._last_began: datetime | None = None
        self.transactions = 0  # shared transactions begun (a bench and the tests read these)
        self.callers = 0  # callers written in them

    async def commit(self, batches: Batches, fence: Fence | None) -> None:
        waiting = _Waiting(batches, fence, asyncio.get_running_loop().create_future())
        self._queue.append(waiting)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="store:group-commit")
        await waiting.done

    async def drain(self) -> None:
        """Wait until every queued caller is written (before the connection closes)."""
        while self._writer is not None:
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        group: list[_Waiting] = []
        try:
            while self._queue:
                if self._window and self._last_began is not None:
                    # Bounded by the window: a wall clock stepped back must not stall commits.
                    wait = min(self._window, self._last_began + self._window - self._clock.now())
                    if wait > timedelta(0):
                        await self._clock.sleep(wait.total_seconds())
                async with self._store._lock:
                    group = [w for w in self._queue if not w.done.done()]  # cancelled: left out
                    self._queue = []
                    if not group:
                        continue
                    self._last_began = self._clock.now()
                    self.transactions += 1
                    self.callers += len(group)
                    entries = [(w.batches, w.fence) for w in group]
                    try:
                        db = self._store._conn()
                        # aiosqlite has no public "run this callable" API; `_execute` is what it uses.
                        outcomes = await db._execute(commit_group, db._conn, entries)  # type: ignore[no-untyped-call]
                        self._store._checkpoints.wrote()
                    except Exception as exc:  # BEGIN failed, or the store is closed: every caller's
                        outcomes = [self._shared(exc)] * len(group)
                for w, outcome in zip(group, outcomes, strict=True):
                    if w.done.done():
                        continue  # cancelled while its transaction ran: its rows may have landed
                    if outcome is None:
                        w.done.set_result(None)
                    else:
                        w.done.set_exception(self._own_error(outcome))
                group = []
        finally:
            self._writer = None
            # Only when this task itself is cancelled (the loop shutting down): nobody may hang.
            stranded, self._queue = [*group, *self._queue], []
            for w in stranded:
                if not w.done.done():
                    w.done.set_exception(
                        StoreError(
                            f"SQLite store {str(self._store.path)!r}: commit interrupted at shutdown, "
                            "its outcome unknown (the next poll reads the resource again)"
                        )
                    )

    def _shared(self, exc: Exception) -> Exception:
        # Marked so each caller gets an exception object of its own (raised in its own task).
        return _Shared(exc)

    def _own_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, _Shared):
            exc = exc.error
            if not isinstance(exc, sqlite3.Error):
                wrapped = StoreError(str(exc))
                wrapped.__cause__ = exc
                return wrapped
        if isinstance(exc, sqlite3.Error):
            wrapped = StoreError(f"SQLite store {str(self._store.path)!r}: {exc}")
            wrapped.__cause__ = exc
            return wrapped
        return exc


class _Shared(Exception):
    """One failure of the whole group (never raised itself: each caller gets its own copy)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def commit_group(
    conn: sqlite3.Connection, entries: Sequence[tuple[Batches, Fence | None]]
) -> list[Exception | None]:
    """On aiosqlite's thread: every caller's rows in ONE transaction, each under its own savepoint;
    each caller's outcome (None: written). Should the shared transaction itself fail after BEGIN
    (COMMIT refused, SQLite rolled it all back, e.g. SQLITE_FULL), each caller is retried alone, so
    its own outcome stands."""
    if len(entries) == 1:
        return [_alone(conn, *entries[0])]
    conn.execute("BEGIN IMMEDIATE")  # a failure here is every caller's, raised as it is
    outcomes: list[Exception | None] = []
    try:
        for batches, fence in entries:
            conn.execute("SAVEPOINT caller")
            try:
                write_result_rows(conn, batches, fence)
            except Exception as exc:
                if not conn.in_transaction:
                    raise  # SQLite dropped the whole transaction: retry each alone below
                conn.execute("ROLLBACK TO caller")
                outcomes.append(exc)
            else:
                outcomes.append(None)
            conn.execute("RELEASE caller")
        conn.execute("COMMIT")
    except sqlite3.Error:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        return [_alone(conn, batches, fence) for batches, fence in entries]
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _alone(conn: sqlite3.Connection, batches: Batches, fence: Fence | None) -> Exception | None:
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            write_result_rows(conn, batches, fence)
            conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (e.g. after SQLITE_FULL): nothing left to undo.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    except Exception as exc:
        return exc
    return None


def write_result_rows(conn: sqlite3.Connection, batches: Batches, fence: Fence | None) -> None:
    """The fence, the snapshots and events row by row (each compare-and-swap checked), one
    executemany per other batch; CommitConflict naming the losers (FencedOut when the fence's lease
    has another holder). Inside a transaction the caller opened."""
    fence_token(conn, fence)
    (snap_q, snapshots), (event_q, events), *rest = batches
    stale = [row[:3] for row in snapshots if conn.execute(snap_q, row).rowcount == 0]
    for row in events:
        try:
            conn.execute(event_q, row)
        except sqlite3.IntegrityError as exc:
            if "events.rule_id" not in str(exc):
                raise
            stale.append((row[5], row[6], row[7]))  # this transition is recorded already
    if stale:
        raise CommitConflict(
            [ResourceKey(provider=p, source=s, resource_id=r) for p, s, r in dict.fromkeys(stale)]
        )
    for query, rows in rest:
        if rows:
            conn.executemany(query, rows)
