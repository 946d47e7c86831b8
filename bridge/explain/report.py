""" "Why (not)?" (#14): the last evaluations of a rule on a resource, with the deliveries they made and
every attempt of those, read from the store. One reader for `GET /api/explain` and `wattbridge explain`.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import dataclass

import orjson

from bridge.model import Attempt, Delivery, Trace
from bridge.store.base import Store

DEFAULT_EVALUATIONS = 10


@dataclass(frozen=True, slots=True, kw_only=True)
class Sent:
    delivery: Delivery
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    trace: Trace
    deliveries: tuple[Sent, ...]


async def explain(
    store: Store,
    rule_id: str,
    resource_id: str,
    *,
    provider: str | None = None,
    source: str | None = None,
    limit: int = DEFAULT_EVALUATIONS,
) -> list[Evaluation]:
    """The newest `limit` evaluations, newest first, each with its deliveries and their attempts."""
    traces = await store.list_traces(rule_id, resource_id, provider=provider, source=source, limit=limit)
    event_ids = [e for t in traces for e in t.event_ids]
    by_event: dict[str, list[Sent]] = {}
    for d in await store.deliveries_of_events(event_ids):
        sent = Sent(delivery=d, attempts=tuple(await store.list_attempts(d.id)))
        by_event.setdefault(d.event_id, []).append(sent)
    return [
        Evaluation(trace=t, deliveries=tuple(s for e in t.event_ids for s in by_event.get(e, [])))
        for t in traces
    ]


def unknown_rule(rule_id: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(rule_id, list(known), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no rule has the id {rule_id!r}{hint}"


def nothing_recorded(rule_id: str, resource_id: str) -> str:
    return (
        f"no evaluation of {rule_id!r} on {resource_id!r} is recorded: the resource has not changed in a "
        "way this rule looks at (its source and field) since the traces kept by retention began, or the "
        "resource id is not the one the provider uses"
    )


def _json(value: object) -> str:
    return orjson.dumps(value, default=str).decode()


def render(rule_id: str, resource_id: str, evaluations: list[Evaluation]) -> str:
    """The evaluations as text, newest first: what changed, each check, the outcome and why, and
    each delivery with its attempts."""
    if not evaluations:
        return nothing_recorded(rule_id, resource_id) + "\n"
    lines = [f"Last {len(evaluations)} evaluation(s) of {rule_id} on {resource_id}, newest first:", ""]
    for ev in evaluations:
        t = ev.trace
        when = t.at.isoformat().replace("+00:00", "Z")
        lines.append(f"{when}  {t.outcome.upper()}  ({t.trigger}, {t.key})")
        for c in t.changes:
            lines.append(f"    changed  {c.field}: {_json(c.old)} -> {_json(c.new)}")
        for check in t.checks:
            mark = "ok  " if check.ok else "FAIL"
            lines.append(f"    {mark}     {check.name}: wanted {_json(check.want)}, got {_json(check.got)}")
        for reason in t.reasons:
            lines.append(f"    why      {reason}")
        for s in ev.deliveries:
            d = s.delivery
            lines.append(f"    delivery {d.id} to {d.channel}: {d.status} ({d.attempts} attempt(s))")
            for a in s.attempts:
                at = a.at.isoformat().replace("+00:00", "Z")
                result = "ok" if a.ok else f"failed: {a.error or ''}".rstrip(": ")
                code = f" HTTP {a.status_code}" if a.status_code is not None else ""
                lines.append(f"        #{a.number} {at}{code} {result} ({a.latency_ms:.0f} ms)")
        lines.append("")
    return "\n".join(lines)
