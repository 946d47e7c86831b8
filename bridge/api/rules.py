"""`GET /api/rules` and `POST /api/rules/reload`: the running rule set and the SIGHUP reload path.

A reload goes through `RuleBook.reload()`, exactly what SIGHUP does: an invalid rule set is refused
with every FILE:LINE problem (422) and the last good set keeps running.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from bridge.api.json_errors import ApiError
from bridge.api.models import EscalationOut, ReloadResult, RuleList, RuleOut
from bridge.api.registry import ApiRoutes
from bridge.app_keys import RULEBOOK, STORE

routes = ApiRoutes()


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


@routes.get("/api/rules", summary="The loaded rules, with when each last fired", tag="rules")
async def list_rules(request: web.Request) -> RuleList:
    book = request.app[RULEBOOK]
    fired = await request.app[STORE].last_fired()
    items = [
        RuleOut(
            id=r.id,
            description=r.description,
            source=r.source,
            event=r.event,
            field=r.field,
            severity=r.severity,
            type=r.type,
            channels=list(r.channels),
            file=r.file,
            line=r.line,
            hold_s=_seconds(r.for_),
            repeat_s=_seconds(r.repeat),
            cooldown_s=_seconds(r.cooldown),
            resolve=r.resolve,
            last_fired_at=fired.get(r.id),
            repeat_steps_s=[s.total_seconds() for s in r.repeat_steps],
            repeat_never=r.repeat_never,
            stale_after_s=_seconds(r.stale_after),
            escalate=[
                EscalationOut(after_s=e.after.total_seconds(), channels=list(e.channels)) for e in r.escalate
            ],
        )
        for r in book.current.rules
    ]
    return RuleList(items=items, reloads_ok=book.reloads_ok, reloads_failed=book.reloads_failed)


@routes.post(
    "/api/rules/reload",
    summary="Re-read the rule files; an invalid set is refused (422) and the last good set kept",
    tag="rules",
)
async def reload_rules(request: web.Request) -> ReloadResult:
    book = request.app[RULEBOOK]
    before = set(book.current.by_id)
    problem = book.reload()
    if problem is not None:
        raise ApiError(
            422,
            "invalid rules; the last good rules are kept",
            {"problems": [str(p) for p in problem.problems], "kept": len(book.current.rules)},
        )
    after = set(book.current.by_id)
    return ReloadResult(rules=len(after), added=sorted(after - before), removed=sorted(before - after))
