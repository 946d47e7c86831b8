"""A trace as the stores keep it: the indexed columns, and the rest as one JSON text (both stores)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from bridge.model import Change, Check, ResourceKey, Trace


def trace_body(t: Trace) -> str:
    return orjson.dumps(
        {
            "trigger": t.trigger,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in t.changes],
            "checks": [{"name": c.name, "want": c.want, "got": c.got, "ok": c.ok} for c in t.checks],
            "reasons": list(t.reasons),
            "event_ids": list(t.event_ids),
        },
        default=str,
    ).decode()


def trace_of(
    *, rule_id: str, provider: str, source: str, resource_id: str, at: datetime, outcome: str, body: str
) -> Trace:
    data: dict[str, Any] = orjson.loads(body)
    return Trace(
        rule_id=rule_id,
        key=ResourceKey(source=source, provider=provider, resource_id=resource_id),
        at=at,
        trigger=data.get("trigger", ""),
        changes=tuple(Change(field=c["field"], old=c["old"], new=c["new"]) for c in data.get("changes", [])),
        checks=tuple(
            Check(name=c["name"], want=c["want"], got=c["got"], ok=bool(c["ok"]))
            for c in data.get("checks", [])
        ),
        outcome=outcome,
        reasons=tuple(data.get("reasons", [])),
        event_ids=tuple(data.get("event_ids", [])),
    )
