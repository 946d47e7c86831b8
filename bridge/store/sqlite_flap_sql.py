"""SQL and row mapping of flap detection states (#14, `flap`): one row per (rule, resource) whose
watched field changed recently or that is flapping. Shared by both stores: the row layout is the
same, only the placeholders and the time type differ (`postgres_flaps.py` binds them)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson

from bridge.model import FlapState, Flip, ResourceKey
from bridge.store.sqlite_sql import Row, _dt, _json, _ts

FLAP_SCHEMA = """
CREATE TABLE IF NOT EXISTS flap_states (
    rule_id         TEXT NOT NULL,
    provider        TEXT NOT NULL,
    source          TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    flips           TEXT NOT NULL,  -- JSON [[at, old, new], ...]: the changes still in the window
    since           TEXT,           -- flapping since (NULL: counting)
    count           INTEGER NOT NULL DEFAULT 0,
    first_value     TEXT,           -- JSON
    last_value      TEXT,           -- JSON
    last_change_at  TEXT,
    muted           INTEGER NOT NULL DEFAULT 0,
    due_at          TEXT,
    PRIMARY KEY (rule_id, provider, source, resource_id)
) WITHOUT ROWID;
"""

Q_FLAP_UPSERT = """
INSERT INTO flap_states (rule_id, provider, source, resource_id, flips, since, count, first_value,
    last_value, last_change_at, muted, due_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (rule_id, provider, source, resource_id) DO UPDATE SET
    flips = excluded.flips, since = excluded.since, count = excluded.count,
    first_value = excluded.first_value, last_value = excluded.last_value,
    last_change_at = excluded.last_change_at, muted = excluded.muted, due_at = excluded.due_at"""
Q_FLAP_DELETE = """
DELETE FROM flap_states WHERE rule_id = ? AND provider = ? AND source = ? AND resource_id = ?"""
Q_FLAPS_DELETE_RULE = "DELETE FROM flap_states WHERE rule_id = ?"
Q_FLAPS_ALL = """
SELECT rule_id, provider, source, resource_id, flips, since, count, first_value, last_value,
    last_change_at, muted, due_at FROM flap_states"""


def flap_key(s: FlapState) -> tuple[Any, ...]:
    return (s.rule_id, s.key.provider, s.key.source, s.key.resource_id)


def flap_row(s: FlapState, ts: Callable[[datetime], Any] = _ts) -> tuple[Any, ...]:
    """The row of a state; `ts` turns a time into the store's column value."""
    flips = [[f.at.isoformat(), f.old, f.new] for f in s.flips]

    def t(when: datetime | None) -> Any:
        return None if when is None else ts(when)

    return (
        *flap_key(s),
        _json(flips),
        t(s.since),
        s.count,
        _json(s.first),
        _json(s.last),
        t(s.last_change_at),
        s.muted,
        t(s.due_at),
    )


def flap_state(row: Row, dt: Callable[[Any], datetime] = _dt) -> FlapState:
    rule_id, provider, source, resource_id, flips, since, count, first, last, changed, muted, due = row

    def t(value: Any) -> datetime | None:
        return None if value is None else dt(value)

    return FlapState(
        rule_id=rule_id,
        key=ResourceKey(provider=provider, source=source, resource_id=resource_id),
        flips=tuple(
            Flip(at=datetime.fromisoformat(at), old=old, new=new) for at, old, new in orjson.loads(flips)
        ),
        since=t(since),
        count=count,
        first=orjson.loads(first) if first is not None else None,
        last=orjson.loads(last) if last is not None else None,
        last_change_at=t(changed),
        muted=muted,
        due_at=t(due),
    )
