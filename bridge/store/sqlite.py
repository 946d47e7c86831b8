"""The embedded store: SQLite in WAL mode through aiosqlite, the outbox's durable home.

Its promise is the Store protocol's: each `commit` is ONE transaction (snapshots, events and
deliveries together, idempotent by id), and `claim_due` leases work without holding a lock across
a send. Datetimes are stored as fixed-width ISO-8601 UTC text (`2026-11-22T21:00:00.000000Z`), so
text order is time order and an operator can read them with the `sqlite3` shell.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from bridge.errors import StoreError
from bridge.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    PollResult,
    ResourceKey,
    RuleState,
    Silence,
    Snapshot,
    Watch,
)
from bridge.store.base import AttemptOutcome, HeldGroup, OutboxCounts
from bridge.store.sqlite_api import SqliteApiReads
from bridge.store.sqlite_rule_sql import (
    Q_HELD_GROUPS,
    Q_HELD_OF_GROUP,
    Q_MARK_DIGESTED,
    Q_RULE_STATE_DELETE,
    Q_RULE_STATE_UPSERT,
    Q_RULE_STATES_ALL,
    Q_RULE_STATES_DELETE_RULE,
    Q_SILENCE_EXPIRE,
    Q_SILENCE_GET,
    Q_SILENCE_INSERT,
    Q_SILENCES_LIST,
    RULE_SCHEMA,
    rule_state,
    rule_state_key,
    rule_state_row,
    silence,
    silence_row,
)
from bridge.store.sqlite_sql import (
    _SCHEMA,
    BUSY_TIMEOUT_S,
    MIGRATE_DELIVERIES_TO_V3,
    Q_ATTEMPT_INSERT,
    Q_ATTEMPTS_OF,
    Q_DEAD_BY_CHANNEL,
    Q_DELIVERIES_LIST,
    Q_DELIVERY_AFTER_ATTEMPT,
    Q_DELIVERY_EXISTS,
    Q_DELIVERY_GET,
    Q_DELIVERY_INSERT,
    Q_DEPTH,
    Q_DIGESTS_OF_SOURCE,
    Q_DUE,
    Q_EVENT_GET,
    Q_EVENT_INSERT,
    Q_EVENTS_LATEST,
    Q_LEASE,
    Q_NEXT_DUE,
    Q_OLDEST_PENDING,
    Q_PENDING_BY_CHANNEL,
    Q_REPLAY,
    Q_SNAPSHOT_GET,
    Q_SNAPSHOT_UPSERT,
    Q_SNAPSHOTS_BY_IDS,
    Q_SNAPSHOTS_OF_SOURCE,
    Q_WATCH_DELETE,
    Q_WATCH_END,
    Q_WATCH_UPSERT,
    Q_WATCHES_LIST,
    Q_WATCHES_PAGE,
    SCHEMA_VERSION,
    Row,
    _attempt,
    _attempt_row,
    _delivery,
    _delivery_row,
    _dt,
    _event,
    _event_row,
    _json,
    _snapshot,
    _snapshot_row,
    _ts,
    _watch,
)


class SqliteStore(SqliteApiReads):
    """The Store protocol on one SQLite file (WAL; `synchronous=FULL` survives power loss)."""

    def __init__(self, path: str | Path, *, synchronous: Literal["FULL", "NORMAL"] = "FULL") -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._db: aiosqlite.Connection | None = None
        # One connection: statements of concurrent callers must not interleave inside a transaction.
        self._lock = asyncio.Lock()

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
            for statement in (_SCHEMA + RULE_SCHEMA).split(";"):
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
            async with self._lock:
                await db.close()

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

    # -- snapshots -------------------------------------------------------------------------------

    async def get_snapshot(self, key: ResourceKey) -> Snapshot | None:
        async with self._read() as db:
            rows = list(
                await db.execute_fetchall(Q_SNAPSHOT_GET, (key.provider, key.source, key.resource_id))
            )
        return _snapshot(rows[0]) if rows else None

    async def get_snapshots(self, provider: str, source: str) -> dict[str, Snapshot]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_SNAPSHOTS_OF_SOURCE, (provider, source))
        return {snap.key.resource_id: snap for snap in map(_snapshot, rows)}

    async def get_digests(self, provider: str, source: str) -> dict[str, str]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_DIGESTS_OF_SOURCE, (provider, source))
        return dict(rows)  # type: ignore[arg-type]

    async def get_snapshots_by_id(
        self, provider: str, source: str, resource_ids: Sequence[str]
    ) -> dict[str, Snapshot]:
        if not resource_ids:
            return {}
        async with self._read() as db:
            rows = await db.execute_fetchall(
                Q_SNAPSHOTS_BY_IDS, (provider, source, _json(list(resource_ids)))
            )
        return {snap.key.resource_id: snap for snap in map(_snapshot, rows)}

    # -- commit ----------------------------------------------------------------------------------

    async def commit(self, results: Sequence[PollResult]) -> None:
        if not results:
            return
        try:
            # Serialise before taking the write lock: a bad value fails fast and holds nothing.
            snapshots = [_snapshot_row(r.snapshot) for r in results]
            events = [_event_row(e) for r in results for e in r.events]
            deliveries = [_delivery_row(d) for r in results for d in r.deliveries]
            ended = [
                (_ts(r.snapshot.updated_at), r.end_watch, k.provider, k.source, k.resource_id)
                for r in results
                if r.end_watch is not None
                for k in (r.snapshot.key,)
            ]
            states = [st for r in results for st in r.rule_states]
            forget = [rule_state_key(st) for st in states if st.forgettable]
            keep = [rule_state_row(st) for st in states if not st.forgettable]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot serialise a poll result: {exc}") from exc
        batches = [
            (Q_SNAPSHOT_UPSERT, snapshots),
            (Q_EVENT_INSERT, events),
            (Q_DELIVERY_INSERT, deliveries),
            (Q_WATCH_END, ended),
            (Q_RULE_STATE_UPSERT, keep),
            (Q_RULE_STATE_DELETE, forget),
        ]
        # The whole transaction runs in ONE hop to aiosqlite's thread (~65 µs per hop measured, and a
        # statement per table would be six more). It cannot interleave with another caller's
        # statements: the thread runs one queued call at a time, and this one is BEGIN … COMMIT.
        async with self._lock:
            db = self._conn()
            try:
                await db._execute(_commit_batches, db._conn, batches)  # type: ignore[no-untyped-call]
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc

    # -- outbox ----------------------------------------------------------------------------------

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[Delivery]:
        leased_until, due_at = _ts(now + lease), _ts(now)

        def claim(conn: sqlite3.Connection) -> list[Row]:
            rows = conn.execute(Q_DUE, (due_at, limit)).fetchall()
            if rows:
                conn.executemany(Q_LEASE, [(leased_until, row[0]) for row in rows])
            return rows

        # A lease need not survive a power cut: losing it only makes the delivery due again, which is
        # what a crash mid-send does anyway (at least once). So no fsync of its own; the next durable
        # commit syncs the WAL, lease included.
        rows: list[Row] = await self._in_one_hop(claim, durable=False)
        return [_delivery(row, next_attempt_at=leased_until) for row in rows]

    async def next_due_at(self) -> datetime | None:
        return await self._scalar_time(Q_NEXT_DUE)

    async def outbox_depth(self) -> int:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(Q_DEPTH))
        return int(rows[0][0])

    async def oldest_pending_at(self) -> datetime | None:
        return await self._scalar_time(Q_OLDEST_PENDING)

    async def outbox_counts(self) -> OutboxCounts:
        async with self._read() as db:
            pending = await db.execute_fetchall(Q_PENDING_BY_CHANNEL)
            dead = await db.execute_fetchall(Q_DEAD_BY_CHANNEL)
            oldest = list(await db.execute_fetchall(Q_OLDEST_PENDING))
        return OutboxCounts(
            pending={str(c): int(n) for c, n in pending},
            dead={str(c): int(n) for c, n in dead},
            oldest_pending_at=_dt(oldest[0][0]) if oldest and oldest[0][0] is not None else None,
        )

    async def _scalar_time(self, query: str) -> datetime | None:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(query))
        return _dt(rows[0][0]) if rows and rows[0][0] is not None else None

    async def record_attempt(
        self, attempt: Attempt, *, status: DeliveryStatus, next_attempt_at: datetime | None
    ) -> None:
        outcome = AttemptOutcome(attempt=attempt, status=status, next_attempt_at=next_attempt_at)
        if await self.record_attempts([outcome]):
            raise StoreError(f"no delivery {attempt.delivery_id!r} to record an attempt for")

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> set[str]:
        if not outcomes:
            return set()
        rows = [
            (
                _attempt_row(o.attempt),
                (
                    o.status,
                    o.attempt.number,
                    None if o.next_attempt_at is None else _ts(o.next_attempt_at),
                    None if o.attempt.ok else o.attempt.error,
                    o.attempt.delivery_id,
                ),
            )
            for o in outcomes
        ]

        def record(conn: sqlite3.Connection) -> set[str]:
            # Update first: an unknown delivery is skipped instead of failing the foreign key (and
            # with it every other attempt of the batch). Normally every delivery exists: one
            # executemany per statement; only when some update found nothing, ask which.
            updated = conn.executemany(Q_DELIVERY_AFTER_ATTEMPT, [u for _, u in rows]).rowcount
            if updated == len(rows):
                conn.executemany(Q_ATTEMPT_INSERT, [a for a, _ in rows])
                return set()
            missing: set[str] = set()
            for attempt_row, delivery_update in rows:
                if conn.execute(Q_DELIVERY_EXISTS, (delivery_update[-1],)).fetchone() is None:
                    missing.add(delivery_update[-1])
                else:
                    conn.execute(Q_ATTEMPT_INSERT, attempt_row)
            return missing

        # Not fsynced on its own under FULL (like a claim): the poll result that created the delivery
        # was, before anyone could send it. Losing this record to a power cut leaves the delivery
        # pending as last synced, so it goes out again with the same webhook-id and bytes (at least
        # once), exactly as after a crash mid-send. The next durable commit (any poll result with a
        # change) or WAL checkpoint syncs it, and the WAL only ever recovers a prefix of commits.
        missing: set[str] = await self._in_one_hop(record, durable=False)
        return missing

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
                return await db._execute(transaction)  # type: ignore[no-untyped-call]
            except sqlite3.Error as exc:
                raise StoreError(f"SQLite store {str(self.path)!r}: {exc}") from exc

    async def replay(self, delivery_ids: Sequence[str], now: datetime) -> int:
        if not delivery_ids:
            return 0
        at = _ts(now)
        async with self._transaction() as db:
            cur = await db.executemany(Q_REPLAY, [(at, d) for d in dict.fromkeys(delivery_ids)])
            return max(cur.rowcount, 0)

    # -- reads for ops ---------------------------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(Q_DELIVERY_GET, (delivery_id,)))
        return _delivery(rows[0]) if rows else None

    async def list_deliveries(
        self, *, status: DeliveryStatus | None = None, channel: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_DELIVERIES_LIST, (status, channel, limit))
        return [_delivery(row) for row in rows]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_ATTEMPTS_OF, (delivery_id,))
        return [_attempt(row) for row in rows]

    async def get_event(self, event_id: str) -> Event | None:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(Q_EVENT_GET, (event_id,)))
        return _event(rows[0]) if rows else None

    async def list_events(self, *, limit: int = 100) -> list[Event]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_EVENTS_LATEST, (limit,))
        return [_event(row) for row in rows]

    # -- watches ---------------------------------------------------------------------------------

    async def add_watch(self, watch: Watch) -> None:
        k = watch.key
        row = (k.provider, k.source, k.resource_id, _json(watch.params), _ts(watch.created_at))
        async with self._transaction() as db:
            await db.execute(Q_WATCH_UPSERT, row)

    async def end_watch(self, key: ResourceKey, *, reason: str, at: datetime) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(Q_WATCH_END, (_ts(at), reason, key.provider, key.source, key.resource_id))
            return cur.rowcount > 0

    async def delete_watch(self, key: ResourceKey) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(Q_WATCH_DELETE, (key.provider, key.source, key.resource_id))
            return cur.rowcount > 0

    async def list_watches(
        self, *, provider: str | None = None, source: str | None = None, active_only: bool = True
    ) -> list[Watch]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_WATCHES_LIST, (provider, source, 1 if active_only else 0))
        return [_watch(row) for row in rows]

    async def list_watches_page(
        self, provider: str, *, source: str | None = None, after: tuple[str, str] | None, limit: int
    ) -> list[Watch]:
        after_source, after_id = after or ("", "")
        async with self._read() as db:
            rows = await db.execute_fetchall(
                Q_WATCHES_PAGE, (provider, after_source, after_id, limit, source)
            )
        return [_watch(row) for row in rows]

    # -- rule states and silences ----------------------------------------------------------------

    async def list_rule_states(self) -> list[RuleState]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_RULE_STATES_ALL)
        return [rule_state(row) for row in rows]

    async def delete_rule_states(self, rule_ids: Sequence[str]) -> int:
        async with self._transaction() as db:
            cur = await db.executemany(Q_RULE_STATES_DELETE_RULE, [(r,) for r in rule_ids])
            return max(cur.rowcount, 0)

    async def add_silence(self, silence: Silence) -> None:
        row = silence_row(silence)
        async with self._transaction() as db:
            await db.execute(Q_SILENCE_INSERT, row)

    async def get_silence(self, silence_id: str) -> Silence | None:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(Q_SILENCE_GET, (silence_id,)))
        return silence(rows[0]) if rows else None

    async def list_silences(self, *, active_after: datetime | None = None) -> list[Silence]:
        after = None if active_after is None else _ts(active_after)
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_SILENCES_LIST, (after,))
        return [silence(row) for row in rows]

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(Q_SILENCE_EXPIRE, (_ts(now), silence_id))
            return cur.rowcount > 0

    # -- digests ---------------------------------------------------------------------------------

    async def held_groups(self) -> list[HeldGroup]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_HELD_GROUPS)
        return [
            HeldGroup(
                channel=channel,
                group_key=key,
                first_at=_dt(first),
                count=count,
                last_digest_at=_dt(last) if last else None,
            )
            for channel, key, first, count, last in rows
        ]

    async def list_held(self, channel: str, group_key: str) -> list[Delivery]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_HELD_OF_GROUP, (channel, group_key))
        return [_delivery(row) for row in rows]

    async def commit_digest(self, event: Event, digest: Delivery, members: Sequence[str]) -> None:
        event_row, digest_row = _event_row(event), _delivery_row(digest)
        async with self._transaction() as db:
            await db.execute(Q_EVENT_INSERT, event_row)
            await db.execute(Q_DELIVERY_INSERT, digest_row)
            await db.executemany(Q_MARK_DIGESTED, [(f"sent in digest {digest.id}", m) for m in members])


def _commit_batches(
    conn: sqlite3.Connection, batches: Sequence[tuple[str, Sequence[tuple[Any, ...]]]]
) -> None:
    """BEGIN IMMEDIATE, one executemany per non-empty batch, COMMIT; ROLLBACK on anything."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for query, rows in batches:
            if rows:
                conn.executemany(query, rows)
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already (e.g. after SQLITE_FULL): nothing left to undo.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
