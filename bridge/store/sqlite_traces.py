"""The SQLite store's parts for #14, a mixin on its connection: "why (not)?" reads, retention's
batched deletes, and the end of deferred (time-window) deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bridge.model import Delivery, Trace
from bridge.store.base import Fence, PruneKind, StoreCounts
from bridge.store.sqlite_conn import SqliteConnection
from bridge.store.sqlite_lease_sql import check_fence
from bridge.store.sqlite_sql import _delivery, _json, _ts
from bridge.store.sqlite_trace_sql import (
    Q_COUNTS,
    Q_DELIVERIES_OF_EVENTS,
    Q_DROP_HELD,
    Q_PRUNE_ATTEMPTS,
    Q_PRUNE_DELIVERIES,
    Q_PRUNE_EVENTS,
    Q_PRUNE_TRACES,
    Q_RELEASE_HELD,
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

    async def settle_held(
        self,
        *,
        release: Sequence[str],
        drop: Sequence[tuple[str, str]],
        now: datetime,
        fence: Fence | None = None,
    ) -> None:
        async with self._transaction() as db:
            await check_fence(db, fence)
            await db.executemany(Q_RELEASE_HELD, [(_ts(now), i) for i in release])
            await db.executemany(Q_DROP_HELD, [(why, i) for i, why in drop])
