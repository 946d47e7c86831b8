"""`/api/firings` and `/api/acks`: open firings with their acknowledgement, snooze and escalation,
and acknowledging or snoozing one from the admin API (#14). The CLI (`wattbridge ack`) calls these."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import structlog
from aiohttp import web
from pydantic import ConfigDict, Field

from bridge.api.json_errors import ApiError
from bridge.api.models import DurationText, Name, Request, Response
from bridge.api.registry import ApiRoutes
from bridge.app_keys import CLOCK, POLLER, RULEBOOK
from bridge.model import RuleState
from bridge.poll.acking import AckRefused, AckRequest
from bridge.rules.acks import paused_why

log = structlog.get_logger(__name__)
routes = ApiRoutes()

_STATUS = {"not-firing": 404, "resolved": 409, "acknowledged": 409, "ambiguous": 409, "invalid": 422}


class FiringOut(Response):
    rule: str
    source: str
    provider: str
    resource_id: str
    firing_seq: int | None = Field(description="the event sequence that opened this firing (what links name)")
    since: datetime
    next_reminder_at: datetime | None
    reminders: int
    escalated: int = Field(description="escalation steps sent so far")
    next_escalation_at: datetime | None
    acked_by: str | None
    acked_at: datetime | None
    snoozed_by: str | None
    snoozed_until: datetime | None
    paused: str | None = Field(description="why reminders and escalation wait now (acknowledged, snoozed)")


class FiringList(Response):
    items: list[FiringOut]


class FiringQuery(Request):
    rule: Name | None = None
    resource: Name | None = Field(default=None, description="resource id")


class AckCreate(Request):
    """Acknowledge (until it resolves) or snooze (for `duration`) one rule's firing on a resource."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"rule": "wallbox-action-needed", "resource_id": "wb-1", "by": "ada"}]
        },
    )

    rule: Name
    resource_id: Name
    provider: Name | None = Field(default=None, description="when several providers use the id")
    source: Name | None = Field(default=None, description="when several sources use the id")
    action: Literal["ack", "snooze"] = "ack"
    duration: DurationText | None = Field(default=None, description="a snooze's length (1s to 30d)")
    by: Annotated[str, Field(min_length=1, max_length=200)] = "api"
    comment: Annotated[str, Field(max_length=2000)] = ""


def firing_out(st: RuleState, now: datetime) -> FiringOut:
    return FiringOut(
        rule=st.rule_id,
        source=st.key.source,
        provider=st.key.provider,
        resource_id=st.key.resource_id,
        firing_seq=st.firing_seq,
        since=st.since,
        next_reminder_at=st.due_at,
        reminders=st.repeats,
        escalated=st.escalated,
        next_escalation_at=st.escalate_at,
        acked_by=st.acked_by,
        acked_at=st.acked_at,
        snoozed_by=st.snoozed_by,
        snoozed_until=st.snoozed_until,
        paused=paused_why(st, now),
    )


@routes.get("/api/firings", summary="Open firings: acknowledged, snoozed, escalated", tag="acks")
async def list_firings(request: web.Request, query: FiringQuery) -> FiringList:
    now = request.app[CLOCK].now()
    rules = request.app[RULEBOOK].current
    found = [
        st
        for st in request.app[POLLER].rule_states
        if st.phase == "firing"
        and (query.rule is None or st.rule_id == query.rule)
        and (query.resource is None or st.key.resource_id == query.resource)
    ]
    found.sort(
        key=lambda st: (rules.order(st.rule_id) if st.rule_id in rules.by_id else 1 << 30, str(st.key))
    )
    return FiringList(items=[firing_out(st, now) for st in found])


@routes.post(
    "/api/acks",
    summary="Acknowledge or snooze a firing",
    tag="acks",
    status=201,
    errors=(404, 409, 422),
)
async def create_ack(request: web.Request, body: AckCreate) -> FiringOut:
    if body.action == "snooze" and body.duration is None:
        raise ApiError(422, "invalid acknowledgement", "a snooze needs a `duration` (e.g. 1h)")
    req = AckRequest(
        action=body.action,
        rule_id=body.rule,
        resource_id=body.resource_id,
        provider=body.provider,
        source=body.source,
        snooze=body.duration,
        by=body.by,
        comment=body.comment,
    )
    try:
        state = await request.app[POLLER].acknowledge(req)
    except AckRefused as exc:
        raise ApiError(_STATUS.get(exc.reason, 409), exc.reason.replace("-", " "), exc.message) from exc
    return firing_out(state, request.app[CLOCK].now())
