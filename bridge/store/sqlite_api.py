"""The SQLite store's reads for the admin API: filtered, keyset-paged listings and a few counts.

A mixin of `SqliteStore` on its connection guards, kept apart so the store's core file stays about
transactions and the outbox: single rows and short lists for the CLI, keyset pages for the API.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from bridge.model import Attempt, Delivery, DeliveryStatus, Event
from bridge.store.base import DeliveryQuery, EventQuery
from bridge.store.sqlite_api_sql import (
    Q_DELIVERIES_PAGE,
    Q_EVENTS_PAGE,
    Q_LAST_FIRED,
    Q_LAST_FIRINGS,
    Q_RESOURCE_COUNTS,
)
from bridge.store.sqlite_conn import SqliteConnection
from bridge.store.sqlite_sql import (
    Q_ATTEMPTS_OF,
    Q_DELIVERIES_LIST,
    Q_DELIVERY_GET,
    Q_EVENT_GET,
    Q_EVENTS_LATEST,
    _attempt,
    _delivery,
    _dt,
    _event,
    _json,
    _ts,
)


class SqliteApiReads(SqliteConnection):
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

    async def page_events(self, query: EventQuery, *, limit: int) -> list[Event]:
        q = query
        after_at, after_id = (None, None) if q.after is None else (_ts(q.after[0]), q.after[1])
        since = None if q.since is None else _ts(q.since)
        until = None if q.until is None else _ts(q.until)
        args = (q.rule, q.source, q.provider, q.resource_id, since, until, after_at, after_id, limit)
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_EVENTS_PAGE, args)
        return [_event(row) for row in rows]

    async def page_deliveries(self, query: DeliveryQuery, *, limit: int) -> list[Delivery]:
        q = query
        after_at, after_id = (None, None) if q.after is None else (_ts(q.after[0]), q.after[1])
        args = (q.status, q.channel, q.event_id, after_at, after_id, limit)
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_DELIVERIES_PAGE, args)
        return [_delivery(row) for row in rows]

    async def last_fired(self) -> dict[str, datetime]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_LAST_FIRED)
        return {rule_id: _dt(at) for rule_id, at in rows}

    async def last_firings(self, rule_ids: Sequence[str]) -> dict[str, datetime]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_LAST_FIRINGS, (_json(list(rule_ids)),))
        return {rule_id: _dt(at) for rule_id, at in rows if at is not None}

    async def resource_counts(self, provider: str) -> dict[str, int]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_RESOURCE_COUNTS, (provider,))
        return {source: int(n) for source, n in rows}
