"""The SQLite store's outbox: claiming due deliveries under a lease, recording attempts (group
commit), replay, counts for metrics, and the digest loop's held groups. A mixin of `SqliteStore`."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from bridge.errors import StoreError
from bridge.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
)
from bridge.store.base import AttemptOutcome, Fence, HeldGroup, OutboxCounts, Recorded
from bridge.store.sqlite_conn import SqliteConnection
from bridge.store.sqlite_lease_sql import check_fence
from bridge.store.sqlite_rule_sql import (
    Q_HELD_GROUPS,
    Q_HELD_OF_GROUP,
    Q_MARK_DIGESTED,
)
from bridge.store.sqlite_sql import (
    Q_ATTEMPT_INSERT,
    Q_DEAD_BY_CHANNEL,
    Q_DEFER,
    Q_DELIVERY_AFTER_ATTEMPT,
    Q_DELIVERY_INSERT,
    Q_DELIVERY_TOKEN,
    Q_DEPTH,
    Q_DUE,
    Q_EVENT_INSERT,
    Q_LEASE,
    Q_NEXT_DUE,
    Q_OLDEST_PENDING,
    Q_PENDING_BY_CHANNEL,
    Q_REPLAY,
    Row,
    _attempt_row,
    _delivery,
    _delivery_row,
    _dt,
    _event_row,
    _ts,
)


class SqliteOutbox(SqliteConnection):
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
        return [_delivery(row[:9], next_attempt_at=leased_until, claim_token=row[9] + 1) for row in rows]

    async def defer(
        self, due: Sequence[tuple[str, datetime]], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        known = tokens or {}
        rows = [(_ts(at), delivery_id, known.get(delivery_id)) for delivery_id, at in due]

        def put_back(conn: sqlite3.Connection) -> None:
            conn.executemany(Q_DEFER, rows)

        # Like a lease, a deferral need not survive a power cut: lost, the delivery is due at its
        # lease's end instead, and the rate limit defers it again.
        await self._in_one_hop(put_back, durable=False)

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

    async def record_attempt(
        self, attempt: Attempt, *, status: DeliveryStatus, next_attempt_at: datetime | None
    ) -> None:
        outcome = AttemptOutcome(attempt=attempt, status=status, next_attempt_at=next_attempt_at)
        if (await self.record_attempts([outcome])).missing:
            raise StoreError(f"no delivery {attempt.delivery_id!r} to record an attempt for")

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        if not outcomes:
            return Recorded()
        rows = [
            (
                _attempt_row(o.attempt),
                (
                    o.status,
                    o.attempt.number,
                    None if o.next_attempt_at is None else _ts(o.next_attempt_at),
                    None if o.attempt.ok else o.attempt.error,
                    o.attempt.delivery_id,
                    o.claim_token,
                ),
            )
            for o in outcomes
        ]
        fallbacks = {
            o.attempt.delivery_id: _delivery_row(o.fallback) for o in outcomes if o.fallback is not None
        }

        def record(conn: sqlite3.Connection) -> Recorded:
            done = attempts(conn)
            kept = [row for delivery_id, row in fallbacks.items() if delivery_id not in done.refused]
            if kept:
                conn.executemany(Q_DELIVERY_INSERT, kept)
            return done

        def attempts(conn: sqlite3.Connection) -> Recorded:
            # Update first: an unknown delivery is skipped instead of failing the foreign key (and
            # with it every other attempt of the batch), a fenced one (claimed again since) is left
            # to its new claimer. Normally every update lands: one executemany per statement; only
            # when some found nothing, ask which and why.
            updated = conn.executemany(Q_DELIVERY_AFTER_ATTEMPT, [u for _, u in rows]).rowcount
            if updated == len(rows):
                conn.executemany(Q_ATTEMPT_INSERT, [a for a, _ in rows])
                return Recorded()
            missing: set[str] = set()
            refused: set[str] = set()
            for attempt_row, delivery_update in rows:
                delivery_id, token = delivery_update[-2], delivery_update[-1]
                found = conn.execute(Q_DELIVERY_TOKEN, (delivery_id,)).fetchone()
                if found is None:
                    missing.add(delivery_id)
                elif token is not None and found[0] != token:
                    refused.add(delivery_id)
                else:
                    conn.execute(Q_ATTEMPT_INSERT, attempt_row)
            return Recorded(missing=frozenset(missing), refused=frozenset(refused))

        # Not fsynced on its own under FULL (like a claim): the poll result that created the delivery
        # was, before anyone could send it. Losing this record to a power cut leaves the delivery
        # pending as last synced, so it goes out again with the same webhook-id and bytes (at least
        # once), exactly as after a crash mid-send. The next durable commit (any poll result with a
        # change) or WAL checkpoint syncs it, and the WAL only ever recovers a prefix of commits.
        done: Recorded = await self._in_one_hop(record, durable=False)
        return done

    async def replay(self, delivery_ids: Sequence[str], now: datetime) -> int:
        if not delivery_ids:
            return 0
        at = _ts(now)
        async with self._transaction() as db:
            cur = await db.executemany(Q_REPLAY, [(at, d) for d in dict.fromkeys(delivery_ids)])
            return max(cur.rowcount, 0)

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

    async def commit_digest(
        self, event: Event, digest: Delivery, members: Sequence[str], *, fence: Fence | None = None
    ) -> None:
        event_row, digest_row = _event_row(event), _delivery_row(digest)
        async with self._transaction() as db:
            await check_fence(db, fence)
            await db.execute(Q_EVENT_INSERT, event_row)
            await db.execute(Q_DELIVERY_INSERT, digest_row)
            await db.executemany(Q_MARK_DIGESTED, [(f"sent in digest {digest.id}", m) for m in members])
