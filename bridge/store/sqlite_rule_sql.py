"""SQL and row mapping for what the rule engine keeps: rule states (holds, repeats, cooldowns) and
silences. Apart from `sqlite_sql.py` so each file stays about one part of the schema."""

from __future__ import annotations

from datetime import datetime
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
    firing_seq     INTEGER,                       -- v9 (#14): acknowledge, snooze, escalate
    escalated      INTEGER NOT NULL DEFAULT 0,
    escalate_at    TEXT,
    acked_by       TEXT,
    acked_at       TEXT,
    snoozed_until  TEXT,
    snoozed_by     TEXT,
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

# v8 → v9 (#14): the firing's number, its escalation, and who acknowledged or snoozed it.
MIGRATE_RULE_STATES_TO_V9 = tuple(
    f"ALTER TABLE rule_states ADD COLUMN {column}"
    for column in (
        "firing_seq INTEGER",
        "escalated INTEGER NOT NULL DEFAULT 0",
        "escalate_at TEXT",
        "acked_by TEXT",
        "acked_at TEXT",
        "snoozed_until TEXT",
        "snoozed_by TEXT",
    )
)
# A write that does not itself acknowledge or snooze keeps an acknowledgement or snooze of the
# same firing: a poll that read the state before an ack landed must not undo it (#14).
Q_RULE_STATE_UPSERT = """
INSERT INTO rule_states
    (rule_id, provider, source, resource_id, phase, since, due_at, repeats, last_fired_at, changes,
     firing_seq, escalated, escalate_at, acked_by, acked_at, snoozed_until, snoozed_by)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (rule_id, provider, source, resource_id) DO UPDATE SET
    phase = excluded.phase, since = excluded.since, due_at = excluded.due_at,
    repeats = excluded.repeats, last_fired_at = excluded.last_fired_at, changes = excluded.changes,
    firing_seq = excluded.firing_seq, escalated = excluded.escalated,
    escalate_at = excluded.escalate_at,
    acked_by = CASE WHEN excluded.acked_by IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS rule_states.firing_seq
        THEN rule_states.acked_by ELSE excluded.acked_by END,
    acked_at = CASE WHEN excluded.acked_at IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS rule_states.firing_seq
        THEN rule_states.acked_at ELSE excluded.acked_at END,
    snoozed_until = CASE WHEN excluded.snoozed_until IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS rule_states.firing_seq
        THEN rule_states.snoozed_until ELSE excluded.snoozed_until END,
    snoozed_by = CASE WHEN excluded.snoozed_by IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS rule_states.firing_seq
        THEN rule_states.snoozed_by ELSE excluded.snoozed_by END"""
Q_RULE_STATE_DELETE = """
DELETE FROM rule_states WHERE rule_id = ? AND provider = ? AND source = ? AND resource_id = ?"""
Q_RULE_STATES_DELETE_RULE = "DELETE FROM rule_states WHERE rule_id = ?"
Q_RULE_STATES_ALL = """
SELECT rule_id, provider, source, resource_id, phase, since, due_at, repeats, last_fired_at, changes,
       firing_seq, escalated, escalate_at, acked_by, acked_at, snoozed_until, snoozed_by
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
        s.firing_seq,
        s.escalated,
        _opt_ts(s.escalate_at),
        s.acked_by,
        _opt_ts(s.acked_at),
        _opt_ts(s.snoozed_until),
        s.snoozed_by,
    )


def _opt_ts(when: datetime | None) -> str | None:
    return None if when is None else _ts(when)


def _opt_dt(text: str | None) -> datetime | None:
    return _dt(text) if text else None


def rule_state(row: Row) -> RuleState:
    rule_id, provider, source, resource_id, phase, since, due_at, repeats, last_fired_at, changes = row[:10]
    firing_seq, escalated, escalate_at, acked_by, acked_at, snoozed_until, snoozed_by = row[10:17]
    return RuleState(
        rule_id=rule_id,
        key=ResourceKey(provider=provider, source=source, resource_id=resource_id),
        phase=phase,
        since=_dt(since),
        due_at=_dt(due_at) if due_at else None,
        repeats=repeats,
        last_fired_at=_dt(last_fired_at) if last_fired_at else None,
        changes=tuple(Change(field=c["field"], old=c["old"], new=c["new"]) for c in orjson.loads(changes)),
        firing_seq=firing_seq,
        escalated=escalated,
        escalate_at=_opt_dt(escalate_at),
        acked_by=acked_by,
        acked_at=_opt_dt(acked_at),
        snoozed_until=_opt_dt(snoozed_until),
        snoozed_by=snoozed_by,
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
