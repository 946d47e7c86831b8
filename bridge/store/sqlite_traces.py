"""The SQLite store's "why (not)?" reads and its retention deletes (#14), a mixin on its connection."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bridge.model import Delivery, Trace
from bridge.store.base import PruneKind, StoreCounts
from bridge.store.sqlite_conn import SqliteConnection
from bridge.store.sqlite_sql import _delivery, _json, _ts
from bridge.store.sqlite_trace_sql import (
    Q_COUNTS,
    Q_DELIVERIES_OF_EVENTS,
    Q_PRUNE_ATTEMPTS,
    Q_PRUNE_DELIVERIES,
    Q_PRUNE_EVENTS,
    Q_PRUNE_TRACES,
    Q_TRACES_OF,
    trace,
)

_PRUNE: dict[PruneKind, str] = {
    "traces": Q_PRUNE_TRACES,
    "attempts": Q_PRUNE_ATTEMPTS,
    "deliveries": Q_PRUNE_DELIVERIES,
    "events": Q_PRUNE_EVENTS,
}


class SqliteTraces(SqliteConnection):
    async def list_traces(
        self,
        rule_id: str,
        resource_id: str,
        *,
        provider: str | None = None,
        source: str | None = None,
        limit: int = 10,
    ) -> list[Trace]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_TRACES_OF, (rule_id, resource_id, provider, source, limit))
        return [trace(row) for row in rows]

    async def deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        if not event_ids:
            return []
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_DELIVERIES_OF_EVENTS, (_json(list(event_ids)),))
        return [_delivery(row) for row in rows]

    async def prune(self, kind: PruneKind, *, before: datetime, limit: int) -> int:
        async with self._transaction() as db:
            cur = await db.execute(_PRUNE[kind], (_ts(before), limit))
            return max(cur.rowcount, 0)

    async def counts(self) -> StoreCounts:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(Q_COUNTS))
        events, deliveries, attempts, traces = rows[0]
        return StoreCounts(events=events, deliveries=deliveries, attempts=attempts, traces=traces)
