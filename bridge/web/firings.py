"""The status page's "Firing" section (#14): each open firing, and whether someone acknowledged it
(by whom, when), snoozed it (until when), whether it escalated, and whether a time window holds
its notifications back (deferred). Read from the poller's mirror of the rule states and the few
deferred digest groups: bounded whatever the fleet size."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from aiohttp import web

from bridge.app_keys import POLLER, STORE
from bridge.model import ResourceKey
from bridge.notify.render import deferred_end

FIRINGS_SHOWN = 50
DEFERRED_LOOKED_AT = 100  # held deliveries read to tell which firings a window defers


@dataclass(frozen=True, slots=True, kw_only=True)
class FiringRow:
    rule_id: str
    resource: str
    since: datetime
    state: str  # "acknowledged", "snoozed", "deferred", "escalated", "firing"
    acked_by: str | None
    acked_at: datetime | None
    snoozed_by: str | None
    snoozed_until: datetime | None
    deferred_until: datetime | None
    escalated: int
    next_at: datetime | None  # the next reminder or escalation step


async def _deferred(app: web.Application) -> dict[tuple[str, ResourceKey], datetime]:
    """(rule, resource) → when a time window lets its held notifications go (the earliest)."""
    store = app[STORE]
    out: dict[tuple[str, ResourceKey], datetime] = {}
    budget = DEFERRED_LOOKED_AT
    for g in await store.held_groups():
        until = deferred_end(g.group_key)
        if until is None or budget <= 0:
            continue
        held = (await store.list_held(g.channel, g.group_key))[:budget]
        budget -= len(held)
        for d in held:
            event = await store.get_event(d.event_id)
            if event is not None:
                k = (event.rule_id, event.key)
                out[k] = min(out.get(k, until), until)
    return out


async def firing_rows(app: web.Application, now: datetime) -> list[FiringRow]:
    firing = [st for st in app[POLLER].rule_states if st.phase == "firing"]
    firing.sort(key=lambda st: st.since, reverse=True)
    deferred = await _deferred(app) if firing else defaultdict()
    rows = []
    for st in firing[:FIRINGS_SHOWN]:
        until = deferred.get((st.rule_id, st.key))
        snoozed = st.snoozed_until is not None and st.snoozed_until > now
        state = (
            "acknowledged"
            if st.acked_at is not None
            else "snoozed"
            if snoozed
            else "deferred"
            if until is not None
            else "escalated"
            if st.escalated
            else "firing"
        )
        rows.append(
            FiringRow(
                rule_id=st.rule_id,
                resource=str(st.key),
                since=st.since,
                state=state,
                acked_by=st.acked_by,
                acked_at=st.acked_at,
                snoozed_by=st.snoozed_by if snoozed else None,
                snoozed_until=st.snoozed_until if snoozed else None,
                deferred_until=until,
                escalated=st.escalated,
                next_at=st.next_due,
            )
        )
    return rows
