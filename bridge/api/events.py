"""`GET /api/events`: what fired, newest first, filtered and paged with an opaque cursor."""

from __future__ import annotations

from aiohttp import web

from bridge.api.models import ChangeOut, EventListQuery, EventOut, EventPage, decode_cursor, split_page
from bridge.api.registry import ApiRoutes
from bridge.app_keys import STORE
from bridge.model import Event
from bridge.store.base import EventQuery

routes = ApiRoutes()


def event_out(e: Event) -> EventOut:
    return EventOut(
        id=e.id,
        rule=e.rule_id,
        type=e.type,
        status=e.status,
        severity=e.severity,
        source=e.key.source,
        provider=e.key.provider,
        resource_id=e.key.resource_id,
        sequence=e.sequence,
        changes=[ChangeOut(field=c.field, old=c.old, new=c.new) for c in e.changes],
        state=e.state,
        occurred_at=e.occurred_at,
    )


@routes.get("/api/events", summary="List events (newest first)", tag="events")
async def list_events(request: web.Request, query: EventListQuery) -> EventPage:
    q = EventQuery(
        rule=query.rule,
        source=query.source,
        provider=query.provider,
        resource_id=query.resource_id,
        since=query.since,
        until=query.until,
        after=None if query.cursor is None else decode_cursor(query.cursor),
    )
    found = await request.app[STORE].page_events(q, limit=query.limit + 1)
    page, cursor = split_page(found, query.limit, lambda e: (e.occurred_at, e.id))
    return EventPage(items=[event_out(e) for e in page], next_cursor=cursor)
