"""SQL and row mapping for what the rule engine keeps: rule states (holds, repeats, cooldowns) and
silences. Apart from `sqlite_sql.py` so each file stays about one part of the schema."""

from __future__ import annotations

from typing import Any

import orjson

from bridge.model import Change, ResourceKey, RuleState, Silence
from bridge.store.sqlite_sql import Row, _dt, _json, _ts

RULE_SCHEMA = """
CREATE TABLE IF NOT EXISTS rule_states (
    rule_id        TEXT NOT NULL,
    provider       TEXT NOT NULL,
    source         TEXT NOT NULL,
    resource_id    TEXT NOT NULL,
    phase          TEXT NOT NULL CHECK (phase IN ('pending', 'firing', 'idle')),
    since          TEXT NOT NULL,
    due_at         TEXT,
    repeats        INTEGER NOT NULL DEFAULT 0,
    last_fired_at  TEXT,
    changes        TEXT NOT NULL,
    PRIMARY KEY (rule_id, provider, source, resource_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS silences (
    id          TEXT PRIMARY KEY,
    rule        TEXT,
    source      TEXT,
    resource    TEXT,
    starts_at   TEXT NOT NULL,
    ends_at     TEXT NOT NULL,
    comment     TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
"""

Q_RULE_STATE_UPSERT = """
INSERT INTO rule_states
    (rule_id, provider, source, resource_id, phase, since, due_at, repeats, last_fired_at, changes)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (rule_id, provider, source, resource_id) DO UPDATE SET
    phase = excluded.phase, since = excluded.since, due_at = excluded.due_at,
    repeats = excluded.repeats, last_fired_at = excluded.last_fired_at, changes = excluded.changes"""
Q_RULE_STATE_DELETE = """
DELETE FROM rule_states WHERE rule_id = ? AND provider = ? AND source = ? AND resource_id = ?"""
Q_RULE_STATES_DELETE_RULE = "DELETE FROM rule_states WHERE rule_id = ?"
Q_RULE_STATES_ALL = """
SELECT rule_id, provider, source, resource_id, phase, since, due_at, repeats, last_fired_at, changes
FROM rule_states"""
Q_SILENCE_INSERT = """
INSERT INTO silences (id, rule, source, resource, starts_at, ends_at, comment, created_by, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
Q_SILENCES_LIST = """
SELECT id, rule, source, resource, starts_at, ends_at, comment, created_by, created_at FROM silences
WHERE (?1 IS NULL OR ends_at > ?1) ORDER BY starts_at, id"""
Q_SILENCE_GET = """
SELECT id, rule, source, resource, starts_at, ends_at, comment, created_by, created_at FROM silences
WHERE id = ?"""
Q_SILENCE_EXPIRE = "UPDATE silences SET ends_at = ?1 WHERE id = ?2 AND ends_at > ?1"


def rule_state_key(s: RuleState) -> tuple[Any, ...]:
    return (s.rule_id, s.key.provider, s.key.source, s.key.resource_id)


def rule_state_row(s: RuleState) -> tuple[Any, ...]:
    changes = [{"field": c.field, "old": c.old, "new": c.new} for c in s.changes]
    return (
        *rule_state_key(s),
        s.phase,
        _ts(s.since),
        None if s.due_at is None else _ts(s.due_at),
        s.repeats,
        None if s.last_fired_at is None else _ts(s.last_fired_at),
        _json(changes),
    )


def rule_state(row: Row) -> RuleState:
    rule_id, provider, source, resource_id, phase, since, due_at, repeats, last_fired_at, changes = row
    return RuleState(
        rule_id=rule_id,
        key=ResourceKey(provider=provider, source=source, resource_id=resource_id),
        phase=phase,
        since=_dt(since),
        due_at=_dt(due_at) if due_at else None,
        repeats=repeats,
        last_fired_at=_dt(last_fired_at) if last_fired_at else None,
        changes=tuple(Change(field=c["field"], old=c["old"], new=c["new"]) for c in orjson.loads(changes)),
    )


def silence_row(s: Silence) -> tuple[Any, ...]:
    return (
        s.id,
        s.rule,
        s.source,
        s.resource,
        _ts(s.starts_at),
        _ts(s.ends_at),
        s.comment,
        s.created_by,
        _ts(s.created_at),
    )


def silence(row: Row) -> Silence:
    id_, rule, source, resource, starts_at, ends_at, comment, created_by, created_at = row
    return Silence(
        id=id_,
        rule=rule,
        source=source,
        resource=resource,
        starts_at=_dt(starts_at),
        ends_at=_dt(ends_at),
        comment=comment,
        created_by=created_by,
        created_at=_dt(created_at),
    )


# Digests: held deliveries grouped per (channel, group_key); a digest is itself a delivery carrying
# the group_key, so the last one sent per group is found the same way.
Q_HELD_GROUPS = """
SELECT h.channel, h.group_key, MIN(h.created_at), COUNT(*),
       (SELECT MAX(d.created_at) FROM deliveries d
        WHERE d.channel = h.channel AND d.group_key = h.group_key
          AND d.status IN ('pending', 'delivered', 'dead'))
FROM deliveries h WHERE h.status = 'held' GROUP BY h.channel, h.group_key"""
Q_HELD_OF_GROUP = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error
FROM deliveries WHERE status = 'held' AND channel = ? AND group_key = ? ORDER BY created_at, id"""
Q_MARK_DIGESTED = "UPDATE deliveries SET status = 'digested', last_error = ? WHERE id = ? AND status = 'held'"
