"""The PostgreSQL store's reads for ops and the admin API: single rows and short lists for the CLI,
keyset pages for the API, a few counts. A mixin over the store's `_fetch`, mirroring SQLite's
`sqlite_api.py`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bridge.model import Attempt, Delivery, DeliveryStatus, Event
from bridge.store import postgres_rows as rows_
from bridge.store import postgres_sql as q
from bridge.store.base import DeliveryQuery, EventQuery


class PostgresApiReads:
    """Mixed into PostgresStore, which provides `_fetch`."""

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    # -- reads for ops and the admin API ---------------------------------------------------------

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        found = await self._fetch(q.Q_DELIVERY_GET, delivery_id)
        return rows_.delivery(found[0]) if found else None

    async def list_deliveries(
        self, *, status: DeliveryStatus | None = None, channel: str | None = None, limit: int = 100
    ) -> list[Delivery]:
        return [rows_.delivery(r) for r in await self._fetch(q.Q_DELIVERIES_LIST, status, channel, limit)]

    async def list_attempts(self, delivery_id: str) -> list[Attempt]:
        return [rows_.attempt(r) for r in await self._fetch(q.Q_ATTEMPTS_OF, delivery_id)]

    async def get_event(self, event_id: str) -> Event | None:
        found = await self._fetch(q.Q_EVENT_GET, event_id)
        return rows_.event(found[0]) if found else None

    async def list_events(self, *, limit: int = 100) -> list[Event]:
        return [rows_.event(r) for r in await self._fetch(q.Q_EVENTS_LATEST, limit)]

    async def page_events(self, query: EventQuery, *, limit: int) -> list[Event]:
        after_at, after_id = (None, None) if query.after is None else query.after
        args = (query.rule, query.source, query.provider, query.resource_id, query.since, query.until)
        found = await self._fetch(q.Q_EVENTS_PAGE, *args, after_at, after_id, limit)
        return [rows_.event(r) for r in found]

    async def page_deliveries(self, query: DeliveryQuery, *, limit: int) -> list[Delivery]:
        after_at, after_id = (None, None) if query.after is None else query.after
        args = (query.status, query.channel, query.event_id, after_at, after_id, limit)
        return [rows_.delivery(r) for r in await self._fetch(q.Q_DELIVERIES_PAGE, *args)]

    async def last_fired(self) -> dict[str, datetime]:
        return {r[0]: r[1] for r in await self._fetch(q.Q_LAST_FIRED)}

    async def last_firings(self, rule_ids: Sequence[str]) -> dict[str, datetime]:
        found = await self._fetch(q.Q_LAST_FIRINGS, list(rule_ids))
        return {r[0]: r[1] for r in found if r[1] is not None}

    async def resource_counts(self, provider: str) -> dict[str, int]:
        return {r[0]: int(r[1]) for r in await self._fetch(q.Q_RESOURCE_COUNTS, provider)}
