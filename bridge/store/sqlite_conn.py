"""The SQLite store's connection: opening (schema create/upgrade), closing, and the guards every
query runs in (`_read`, `_transaction`, `_in_one_hop`). The store's jobs are mixins on top of it:
`sqlite.py` (snapshots, commit, watches, rule state), `sqlite_outbox.py` (claims, attempts, digests),
`sqlite_api.py` (reads for operators and the admin API).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from bridge.clock import Clock, SystemClock
from bridge.errors import StoreError
from bridge.store.sqlite_checkpoint import Checkpointer
from bridge.store.sqlite_flap_sql import FLAP_SCHEMA
from bridge.store.sqlite_rule_sql import MIGRATE_RULE_STATES_TO_V9, RULE_SCHEMA
from bridge.store.sqlite_sql import (
    _SCHEMA,
    BUSY_TIMEOUT_S,
    MIGRATE_DELIVERIES_TO_V3,
    MIGRATE_DELIVERIES_TO_V8,
    MIGRATE_SNAPSHOTS_TO_V6,
    SCHEMA_VERSION,
    _dt,
)
from bridge.store.sqlite_trace_sql import TRACE_SCHEMA


class SqliteConnection:
    """One aiosqlite connection to one SQLite file (WAL; `synchronous=FULL` survives power loss)."""

    def __init__(
        self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL", clock: Clock | None = None
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        # One connection: statements of concurrent callers must not interleave inside a transaction.
        self._lock = asyncio.Lock()
        self._clock: Clock = clock or SystemClock()
        self._checkpoints = Checkpointer(self.path, clock=self._clock)

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._db is not None:
            return
        pending = aiosqlite.connect(str(self.path), isolation_level=None, timeout=BUSY_TIMEOUT_S)
        # aiosqlite's worker thread is non-daemon: a crash that skips close() would then hang the
        # interpreter at exit instead of exiting (and being restarted by the supervisor).
        pending._thread.daemon = True
        try:
            db = await pending
        except sqlite3.Error as exc:
            # aiosqlite queues its thread's shutdown without awaiting it; wait here, or the thread
            # reports to an event loop that may be closed by then.
            await asyncio.to_thread(pending._thread.join, 5.0)
            raise StoreError(f"cannot open SQLite store {str(self.path)!r}: {exc}") from exc
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute(f"PRAGMA synchronous = {self._synchronous}")
            await db.execute("PRAGMA foreign_keys = ON")
            await db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # Commits never checkpoint: `Checkpointer` does, on its own connection and thread.
            await db.execute("PRAGMA wal_autocheckpoint = 0")
            rows = list(await db.execute_fetchall("PRAGMA user_version"))
            version = int(rows[0][0])
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"SQLite store {str(self.path)!r} has schema version {version}, newer than this "
                    f"Wattbridge understands ({SCHEMA_VERSION}): upgrade Wattbridge or use another file"
                )
            if version < SCHEMA_VERSION:
                await self._upgrade(db, version)
        except BaseException as exc:
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open SQLite store {str(self.path)!r}: {exc}") from exc
            raise
        self._db = db

    @staticmethod
    async def _upgrade(db: aiosqlite.Connection, version: int) -> None:
        """Create the schema, or migrate an older one in place (one transaction)."""
        await db.execute("PRAGMA foreign_keys = OFF")  # a table rebuild must not cascade
        await db.execute("BEGIN IMMEDIATE")
        try:
            if 0 < version < 3:
                for statement in MIGRATE_DELIVERIES_TO_V3.split(";"):
                    if statement.strip():
                        await db.execute(statement)
            columns = {r[1] for r in await db.execute_fetchall("PRAGMA table_info(snapshots)")}
            if 0 < version < 7 and "version" not in columns:
                await db.execute(MIGRATE_SNAPSHOTS_TO_V6)
            columns = {r[1] for r in await db.execute_fetchall("PRAGMA table_info(deliveries)")}
            if 0 < version < 8 and "claim_token" not in columns:
                await db.execute(MIGRATE_DELIVERIES_TO_V8)
            ruled = {r[1] for r in await db.execute_fetchall("PRAGMA table_info(rule_states)")}
            if 0 < version < 9 and ruled and "firing_seq" not in ruled:
                for statement in MIGRATE_RULE_STATES_TO_V9:
                    await db.execute(statement)
            for statement in (_SCHEMA + RULE_SCHEMA + TRACE_SCHEMA + FLAP_SCHEMA).split(";"):
                if statement.strip():
                    await db.execute(statement)
            await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            await db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await db.execute("ROLLBACK")
            raise
        finally:
            await db.execute("PRAGMA foreign_keys = ON")

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await self._checkpoints.close()
            async with self._lock:
                await db.close()  # the last connection to close checkpoints what the WAL still holds

    async def ping(self) -> None:
        async with self._read() as db:
            await db.execute_fetchall("SELECT 1")

    # -- plumbing --------------------------------------------------------------------------------

    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the SQLite store is not open")
        return self._db

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self._conn()
            try:
                yield db
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE … COMMIT: takes the write lock up front, so no upgrade deadlock later."""
        async with self._lock:
            db = self._conn()
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc
            try:
                yield db
                await db.execute("COMMIT")
            except BaseException as exc:
                # Roll back on anything, cancellation included: a half-written poll must not persist.
                # SQLite may have rolled back already (e.g. after SQLITE_FULL): nothing left to undo.
                with contextlib.suppress(sqlite3.Error):
                    await db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc
                raise
            self._checkpoints.wrote()

    async def _scalar_time(self, query: str) -> datetime | None:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(query))
        return _dt(rows[0][0]) if rows and rows[0][0] is not None else None

    async def _in_one_hop(self, work: Callable[[sqlite3.Connection], Any], *, durable: bool = True) -> Any:
        """`work` as ONE transaction in ONE trip to aiosqlite's thread (each awaited statement is a
        thread hop, ~65 µs with its wake-ups; the outbox's claims and records need several statements).

        aiosqlite runs queued calls one at a time, so the transaction cannot interleave with another
        caller's statements even if our awaiting side is cancelled (the lock then no longer holds).
        `durable=False` commits without the fsync that `synchronous=FULL` adds (WAL stays consistent).
        """
        relax = not durable and self._synchronous == "FULL"
        async with self._lock:
            db = self._conn()

            def transaction() -> Any:
                conn = db._conn
                if relax:
                    conn.execute("PRAGMA synchronous = NORMAL")
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        result = work(conn)
                        conn.execute("COMMIT")
                    except BaseException:
                        with contextlib.suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                        raise
                finally:
                    if relax:
                        conn.execute(f"PRAGMA synchronous = {self._synchronous}")
                return result

            try:
                # aiosqlite has no public "run this callable" API; `_execute` is what its own methods use.
                result = await db._execute(transaction)  # type: ignore[no-untyped-call]
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc
        self._checkpoints.wrote()
        return result
