"""SQL of what the SQLite store keeps for "why (not)?" and retention (#14): evaluation traces, the
deliveries of given events, and the batched deletes that keep the store bounded."""

from __future__ import annotations

from typing import Any

from bridge.explain.codec import trace_body, trace_of
from bridge.model import Trace
from bridge.store.sqlite_sql import Row, _dt, _ts

TRACE_SCHEMA = """
CREATE TABLE IF NOT EXISTS traces (
    seq          INTEGER PRIMARY KEY,
    rule_id      TEXT NOT NULL,
    provider     TEXT NOT NULL,
    source       TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    at           TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    body         TEXT NOT NULL
);
-- v6: the last evaluations of a rule on a resource are one index range, newest first.
CREATE INDEX IF NOT EXISTS traces_by_rule ON traces (rule_id, resource_id, seq);
CREATE INDEX IF NOT EXISTS traces_by_time ON traces (at);
-- v6: explain lists an event's deliveries, and retention deletes them, by event.
CREATE INDEX IF NOT EXISTS deliveries_by_event ON deliveries (event_id);
"""

Q_TRACE_INSERT = """
INSERT INTO traces (rule_id, provider, source, resource_id, at, outcome, body)
VALUES (?, ?, ?, ?, ?, ?, ?)"""
Q_TRACES_OF = """
SELECT rule_id, provider, source, resource_id, at, outcome, body FROM traces
WHERE rule_id = ?1 AND resource_id = ?2 AND (?3 IS NULL OR provider = ?3) AND (?4 IS NULL OR source = ?4)
ORDER BY seq DESC LIMIT ?5"""
Q_DELIVERIES_OF_EVENTS = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error
FROM deliveries WHERE event_id IN (SELECT value FROM json_each(?)) ORDER BY created_at, id"""

# Retention: each statement deletes at most ?2 rows older than ?1, oldest first, so a prune is many
# short transactions between which polls and deliveries commit. Deliveries still in the outbox
# (pending or held) are never deleted, nor the events they belong to.
Q_PRUNE_TRACES = """
DELETE FROM traces WHERE seq IN (SELECT seq FROM traces WHERE at < ?1 ORDER BY at LIMIT ?2)"""
Q_PRUNE_ATTEMPTS = """
DELETE FROM attempts WHERE seq IN (
    SELECT a.seq FROM deliveries d JOIN attempts a ON a.delivery_id = d.id
    WHERE d.created_at < ?1 AND d.status NOT IN ('pending', 'held') ORDER BY d.created_at LIMIT ?2)"""
Q_PRUNE_DELIVERIES = """
DELETE FROM deliveries WHERE id IN (
    SELECT d.id FROM deliveries d WHERE d.created_at < ?1 AND d.status NOT IN ('pending', 'held')
    AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id)
    ORDER BY d.created_at LIMIT ?2)"""
Q_PRUNE_EVENTS = """
DELETE FROM events WHERE id IN (
    SELECT e.id FROM events e WHERE e.occurred_at < ?1
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
    ORDER BY e.occurred_at LIMIT ?2)"""
Q_RELEASE_HELD = (
    "UPDATE deliveries SET status = 'pending', next_attempt_at = ? WHERE id = ? AND status = 'held'"
)
Q_DROP_HELD = "UPDATE deliveries SET status = 'suppressed', last_error = ? WHERE id = ? AND status = 'held'"
Q_COUNTS = """
SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM deliveries),
       (SELECT COUNT(*) FROM attempts), (SELECT COUNT(*) FROM traces)"""


def trace_row(t: Trace) -> tuple[Any, ...]:
    k = t.key
    return (t.rule_id, k.provider, k.source, k.resource_id, _ts(t.at), t.outcome, trace_body(t))


def trace(row: Row) -> Trace:
    rule_id, provider, source, resource_id, at, outcome, body = row
    return trace_of(
        rule_id=rule_id,
        provider=provider,
        source=source,
        resource_id=resource_id,
        at=_dt(at),
        outcome=outcome,
        body=body,
    )
