"""`GET /api/explain`: "why did (or didn't) this rule notify about this resource?" (#14).

The last evaluations of a rule on a resource, from the persisted traces (kept by retention): the
change seen, each condition's value, what stopped it (hold, cooldown, silence, window, inhibition,
flapping), and the deliveries it made with every attempt. `bridge/explain/report.py` reads them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from aiohttp import web
from pydantic import Field

from bridge.api.deliveries import delivery_out
from bridge.api.json_errors import ApiError
from bridge.api.models import AttemptOut, ChangeOut, DeliveryOut, JSONValue, Name, Request, Response
from bridge.api.registry import ApiRoutes
from bridge.app_keys import RULEBOOK, STORE
from bridge.explain.report import DEFAULT_EVALUATIONS, explain, nothing_recorded, unknown_rule

routes = ApiRoutes()


class ExplainQuery(Request):
    rule: Name = Field(description="rule id")
    resource: Name = Field(description="resource id, as the provider names it (e.g. a wallbox id)")
    provider: Name | None = Field(default=None, description="narrow to one provider instance")
    source: Name | None = Field(default=None, description="narrow to one source, e.g. podero.wallbox")
    limit: Annotated[int, Field(ge=1, le=100)] = DEFAULT_EVALUATIONS


class CheckOut(Response):
    name: str = Field(description="the condition: from, to, not_from, not_to, above, below, if, condition")
    want: JSONValue = None
    got: JSONValue = None
    ok: bool


class ExplainedDelivery(DeliveryOut):
    attempt_log: list[AttemptOut]


class EvaluationOut(Response):
    at: datetime
    trigger: str = Field(
        description="changed, appeared, disappeared, timer (a hold ending, a reminder, an escalation), "
        "or ack / snooze (someone acknowledged or snoozed the firing, #14)"
    )
    source: str
    provider: str
    resource_id: str
    outcome: str = Field(
        description="sent, resolved, no-match, hold, hold-broken, still-firing, ended, cooldown, silenced, "
        "deferred, inhibited, flapping, settled, digest, no-delivery, acknowledged, snoozed"
    )
    reasons: list[str]
    changes: list[ChangeOut]
    checks: list[CheckOut]
    event_ids: list[str]
    deliveries: list[ExplainedDelivery]


class ExplainOut(Response):
    rule: str
    resource: str
    evaluations: list[EvaluationOut] = Field(description="newest first")
    note: str | None = Field(default=None, description="when nothing is recorded: what that can mean")


@routes.get(
    "/api/explain",
    summary="Why (not)? The last evaluations of a rule on a resource",
    tag="rules",
    errors=(404,),
)
async def get_explain(request: web.Request, query: ExplainQuery) -> ExplainOut:
    found = await explain(
        request.app[STORE],
        query.rule,
        query.resource,
        provider=query.provider,
        source=query.source,
        limit=query.limit,
    )
    known = request.app[RULEBOOK].current.by_id
    if not found and query.rule not in known:
        raise ApiError(404, "no such rule", unknown_rule(query.rule, known))
    return ExplainOut(
        rule=query.rule,
        resource=query.resource,
        evaluations=[
            EvaluationOut(
                at=ev.trace.at,
                trigger=ev.trace.trigger,
                source=ev.trace.key.source,
                provider=ev.trace.key.provider,
                resource_id=ev.trace.key.resource_id,
                outcome=ev.trace.outcome,
                reasons=list(ev.trace.reasons),
                changes=[ChangeOut(field=c.field, old=c.old, new=c.new) for c in ev.trace.changes],
                checks=[CheckOut(name=c.name, want=c.want, got=c.got, ok=c.ok) for c in ev.trace.checks],
                event_ids=list(ev.trace.event_ids),
                deliveries=[
                    ExplainedDelivery(
                        **delivery_out(s.delivery).model_dump(),
                        attempt_log=[
                            AttemptOut(
                                number=a.number,
                                at=a.at,
                                ok=a.ok,
                                status_code=a.status_code,
                                latency_ms=a.latency_ms,
                                error=a.error,
                                response_excerpt=a.response_excerpt,
                            )
                            for a in s.attempts
                        ],
                    )
                    for s in ev.deliveries
                ],
            )
            for ev in found
        ],
        note=None if found else nothing_recorded(query.rule, query.resource),
    )
