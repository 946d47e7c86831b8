"""`GET /api/flapping` (#14, flap detection): which resources flap now, under which rule, since
when, how many changes so far and when each settles if nothing changes again. Read from the
poller's mirror of the committed flap states (no store query)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import Field

from bridge.api.models import Response
from bridge.api.registry import ApiRoutes
from bridge.app_keys import POLLER, RULEBOOK

routes = ApiRoutes()


class FlappingOut(Response):
    rule: str
    provider: str
    source: str
    resource_id: str
    field: str | None = Field(description="the rule's field whose changes are counted")
    since: datetime = Field(description="the first change of the spell")
    changes: int = Field(description="changes since it began flapping (those that started it included)")
    first: Any = Field(description="the field's value before the spell")
    last: Any = Field(description="the field's value now")
    last_change_at: datetime | None
    muted: int = Field(description="the rule's notifications held back so far (kept as suppressed)")
    settles_at: datetime | None = Field(description="when it settles unless the field changes again")


class FlappingList(Response):
    items: list[FlappingOut]


@routes.get("/api/flapping", summary="Resources flapping now (flap detection)", tag="rules")
async def list_flapping(request: web.Request) -> FlappingList:
    rules = request.app[RULEBOOK].current
    items = [
        FlappingOut(
            rule=st.rule_id,
            provider=st.key.provider,
            source=st.key.source,
            resource_id=st.key.resource_id,
            field=rule.field if (rule := rules.by_id.get(st.rule_id)) is not None else None,
            since=st.since,
            changes=st.count,
            first=st.first,
            last=st.last,
            last_change_at=st.last_change_at,
            muted=st.muted,
            settles_at=st.due_at,
        )
        for st in sorted(request.app[POLLER].flapping, key=lambda s: (s.since, s.rule_id, str(s.key)))
        if st.since is not None
    ]
    return FlappingList(items=items)
