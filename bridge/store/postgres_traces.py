"""The PostgreSQL store's "why (not)?" reads and retention deletes (#14): the SQL (migration 2) and a
mixin over the store's `_fetch` / `_execute`, mirroring `sqlite_traces.py`."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bridge.explain.codec import trace_body, trace_of
from bridge.model import Delivery, Trace
from bridge.store import postgres_rows as rows_
from bridge.store.base import Fence, PruneKind, StoreCounts

MIGRATION_2 = """
CREATE TABLE traces (
    seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    rule_id      text NOT NULL,
    provider     text NOT NULL,
    source       text NOT NULL,
    resource_id  text NOT NULL,
    at           timestamptz NOT NULL,
    outcome      text NOT NULL,
    body         text NOT NULL
);
CREATE INDEX traces_by_rule ON traces (rule_id, resource_id, seq);
CREATE INDEX traces_by_time ON traces (at);
CREATE INDEX deliveries_by_event ON deliveries (event_id)
"""

Q_TRACE_INSERT = """
INSERT INTO traces (rule_id, provider, source, resource_id, at, outcome, body)
VALUES ($1, $2, $3, $4, $5, $6, $7)"""
Q_TRACES_OF = """
SELECT rule_id, provider, source, resource_id, at, outcome, body FROM traces
WHERE rule_id = $1 AND resource_id = $2 AND ($3::text IS NULL OR provider = $3)
  AND ($4::text IS NULL OR source = $4)
ORDER BY seq DESC LIMIT $5"""
Q_DELIVERIES_OF_EVENTS = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error
FROM deliveries WHERE event_id = ANY($1::text[]) ORDER BY created_at, id"""
# As SQLite's: at most $2 rows older than $1 per statement; outbox work and its events are kept.
_PRUNE: dict[PruneKind, str] = {
    "traces": """
DELETE FROM traces WHERE seq IN (SELECT seq FROM traces WHERE at < $1 ORDER BY at LIMIT $2)""",
    "attempts": """
DELETE FROM attempts WHERE seq IN (
    SELECT a.seq FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
    WHERE d.created_at < $1 AND d.status NOT IN ('pending', 'held') ORDER BY d.created_at LIMIT $2)""",
    "deliveries": """
DELETE FROM deliveries WHERE id IN (
    SELECT d.id FROM deliveries d WHERE d.created_at < $1 AND d.status NOT IN ('pending', 'held')
    AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id)
    ORDER BY d.created_at LIMIT $2)""",
    "events": """
DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e WHERE e.occurred_at < $1
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
    ORDER BY e.occurred_at LIMIT $2)""",
}
Q_RELEASE_HELD = (
    "UPDATE deliveries SET status = 'pending', next_attempt_at = $1 WHERE id = $2 AND status = 'held'"
)
Q_DROP_HELD = "UPDATE deliveries SET status = 'suppressed', last_error = $1 WHERE id = $2 AND status = 'held'"
Q_COUNTS = """
SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries),
       (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM traces)"""


def trace_row(t: Trace) -> tuple[Any, ...]:
    k = t.key
    return (t.rule_id, k.provider, k.source, k.resource_id, rows_.aware(t.at), t.outcome, trace_body(t))


class PostgresTraces:
    """Mixed into PostgresStore, which provides `_fetch` and `_execute`."""

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _execute(self, query: str, *args: Any) -> int:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def _notify_outbox(self, conn: Any) -> None:
        raise NotImplementedError

    async def list_traces(
        self,
        rule_id: str,
        resource_id: str,
        *,
        provider: str | None = None,
        source: str | None = None,
        limit: int = 10,
    ) -> list[Trace]:
        found = await self._fetch(Q_TRACES_OF, rule_id, resource_id, provider, source, limit)
        return [
            trace_of(
                rule_id=r[0], provider=r[1], source=r[2], resource_id=r[3], at=r[4], outcome=r[5], body=r[6]
            )
            for r in found
        ]

    async def deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        if not event_ids:
            return []
        return [rows_.delivery(r) for r in await self._fetch(Q_DELIVERIES_OF_EVENTS, list(event_ids))]

    async def prune(self, kind: PruneKind, *, before: datetime, limit: int) -> int:
        return await self._execute(_PRUNE[kind], rows_.aware(before), limit)

    async def counts(self) -> StoreCounts:
        [row] = await self._fetch(Q_COUNTS)
        return StoreCounts(events=row[0], deliveries=row[1], attempts=row[2], traces=row[3])

    async def settle_held(
        self,
        *,
        release: Sequence[str],
        drop: Sequence[tuple[str, str]],
        now: datetime,
        fence: Fence | None = None,
    ) -> None:
        from bridge.store.postgres_cluster import check_fence  # it imports postgres_sql, which imports us

        async with self._transaction() as conn:
            await check_fence(conn, fence)
            await conn.executemany(Q_RELEASE_HELD, [(rows_.aware(now), i) for i in release])
            await conn.executemany(Q_DROP_HELD, [(why, i) for i, why in drop])
            if release:
                await self._notify_outbox(conn)
