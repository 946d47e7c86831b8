"""SQL and row mapping of the SQLite store: the schema, the named queries of snapshots, events,
deliveries, attempts and watches, values <-> rows.

Kept apart from `sqlite.py` (the transaction and locking logic) so each file has one job. Leases
and fences are `sqlite_lease_sql.py`'s; rule states, traces, flap states and API reads have their
own `sqlite_*_sql.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.model import (
    Attempt,
    Change,
    Delivery,
    DeliveryStatus,
    Event,
    EventStatus,
    ResourceKey,
    Snapshot,
    Watch,
)

# v8: deliveries.claim_token (#12); v9: acknowledge / snooze / escalation columns of rule_states
# (#14); v10: flap_states (#14 flap detection).
SCHEMA_VERSION = 10
BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    provider     TEXT NOT NULL,
    source       TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    state        TEXT,
    digest       TEXT NOT NULL,
    sequence     INTEGER NOT NULL,
    updated_at   TEXT NOT NULL,
    version      INTEGER NOT NULL DEFAULT 0,  -- v6: compare-and-swap on every write
    PRIMARY KEY (provider, source, resource_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS events (
    id           TEXT PRIMARY KEY,
    rule_id      TEXT NOT NULL,
    type         TEXT NOT NULL,
    status       TEXT NOT NULL,
    severity     TEXT NOT NULL,
    provider     TEXT NOT NULL,
    source       TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    sequence     INTEGER NOT NULL,
    changes      TEXT NOT NULL,
    state        TEXT,
    occurred_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_time ON events (occurred_at);
-- v5: a rule's last firing is one seek, however many events other rules made since (status page).
CREATE INDEX IF NOT EXISTS events_firing_by_rule ON events (rule_id, occurred_at) WHERE status = 'firing';
-- v6: one event per (rule, resource, transition sequence): two writers cannot both record one
-- transition. Digests (sequence 0) are numbered by their own ids.
CREATE UNIQUE INDEX IF NOT EXISTS events_transition
    ON events (rule_id, provider, source, resource_id, sequence) WHERE sequence > 0;
-- v6: leases (poll-group ownership). With one process every lease is its own, but the semantics
-- (and the contract tests) are the same as PostgreSQL's.
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    token       INTEGER NOT NULL,
    expires_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id),
    channel          TEXT NOT NULL,
    body             BLOB NOT NULL,
    -- suppressed: silenced (replayable), held: waiting for its digest, digested: sent in one
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'delivered', 'dead', 'suppressed', 'held', 'digested')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    last_error       TEXT,
    group_key        TEXT,
    claim_token      INTEGER NOT NULL DEFAULT 0  -- v8: fencing token of the current claim
);
-- Partial index: the worker only ever scans pending work, which stays small.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS deliveries_by_time ON deliveries (created_at);
CREATE INDEX IF NOT EXISTS deliveries_held ON deliveries (channel, group_key, created_at)
    WHERE status = 'held';
-- v4: dead letters are counted per channel on every metrics scrape (else a full table scan).
CREATE INDEX IF NOT EXISTS deliveries_dead ON deliveries (channel) WHERE status = 'dead';

CREATE TABLE IF NOT EXISTS attempts (
    seq               INTEGER PRIMARY KEY,
    delivery_id       TEXT NOT NULL REFERENCES deliveries (id),
    number            INTEGER NOT NULL,
    at                TEXT NOT NULL,
    ok                INTEGER NOT NULL,
    status_code       INTEGER,
    latency_ms        REAL NOT NULL,
    error             TEXT,
    response_excerpt  TEXT
);
CREATE INDEX IF NOT EXISTS attempts_by_delivery ON attempts (delivery_id, seq);

CREATE TABLE IF NOT EXISTS watches (
    provider     TEXT NOT NULL,
    source       TEXT NOT NULL,
    resource_id  TEXT NOT NULL,
    params       TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    ended_at     TEXT,
    end_reason   TEXT,
    PRIMARY KEY (provider, source, resource_id)
) WITHOUT ROWID;
"""

# v1..v5 → v6: snapshots gain the version their compare-and-swap writes check (0: written before).
MIGRATE_SNAPSHOTS_TO_V6 = "ALTER TABLE snapshots ADD COLUMN version INTEGER NOT NULL DEFAULT 0"

# v1..v7 → v8: deliveries gain the fencing token their claims carry (0: never claimed).
MIGRATE_DELIVERIES_TO_V8 = "ALTER TABLE deliveries ADD COLUMN claim_token INTEGER NOT NULL DEFAULT 0"

# v1/v2 → v3: `deliveries` gains statuses (a CHECK cannot be altered in SQLite) and `group_key`.
# Runs with foreign keys off (attempts reference deliveries), before _SCHEMA recreates the indexes.
MIGRATE_DELIVERIES_TO_V3 = """
CREATE TABLE deliveries_v3 (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL REFERENCES events (id),
    channel          TEXT NOT NULL,
    body             BLOB NOT NULL,
    status           TEXT NOT NULL CHECK (status IN
                         ('pending', 'delivered', 'dead', 'suppressed', 'held', 'digested')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    last_error       TEXT,
    group_key        TEXT
);
INSERT INTO deliveries_v3
    (id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error)
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error
FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v3 RENAME TO deliveries
"""

# Named queries, spelled out in full (no string building anywhere near SQL).
Q_SNAPSHOT_GET = """
SELECT provider, source, resource_id, state, digest, sequence, updated_at, version FROM snapshots
WHERE provider = ? AND source = ? AND resource_id = ?"""
Q_SNAPSHOTS_OF_SOURCE = """
SELECT provider, source, resource_id, state, digest, sequence, updated_at, version FROM snapshots
WHERE provider = ? AND source = ?"""
# The poller's "did anything meaningful change?" check needs only these two columns.
Q_DIGESTS_OF_SOURCE = """
SELECT resource_id, digest FROM snapshots WHERE provider = ? AND source = ?"""
# Many ids in one statement (one thread hop) without building SQL: the ids travel as one JSON array.
Q_SNAPSHOTS_BY_IDS = """
SELECT provider, source, resource_id, state, digest, sequence, updated_at, version FROM snapshots
WHERE provider = ? AND source = ? AND resource_id IN (SELECT value FROM json_each(?))"""
Q_SNAPSHOT_UPSERT = """
INSERT INTO snapshots (provider, source, resource_id, state, digest, sequence, updated_at, version)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, source, resource_id) DO UPDATE SET
    state = excluded.state, digest = excluded.digest,
    sequence = excluded.sequence, updated_at = excluded.updated_at, version = excluded.version
WHERE snapshots.version = excluded.version - 1"""
Q_EVENT_INSERT = """
INSERT INTO events
    (id, rule_id, type, status, severity, provider, source, resource_id, sequence,
     changes, state, occurred_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO NOTHING"""
Q_EVENT_GET = """
SELECT id, rule_id, type, status, severity, provider, source, resource_id, sequence,
       changes, state, occurred_at
FROM events WHERE id = ?"""
Q_EVENTS_LATEST = """
SELECT id, rule_id, type, status, severity, provider, source, resource_id, sequence,
       changes, state, occurred_at
FROM events ORDER BY occurred_at DESC, id LIMIT ?"""
Q_DELIVERY_INSERT = """
INSERT OR IGNORE INTO deliveries
    (id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error, group_key,
    claim_token)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
Q_DELIVERY_GET = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error
FROM deliveries WHERE id = ?"""
Q_DELIVERIES_LIST = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error
FROM deliveries WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR channel = ?2)
ORDER BY created_at DESC, id LIMIT ?3"""
# Ordered by the partial index alone (ties in index order, i.e. insertion order): a tie-break on `id`
# made SQLite sort every due row, bodies included, on each claim, quadratic in a burst whose
# deliveries share one due time.
Q_DUE = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at, last_error, claim_token
FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?
ORDER BY next_attempt_at LIMIT ?"""
# A claim is a lease and a new fencing token (the one read in the same transaction, plus one).
Q_LEASE = "UPDATE deliveries SET next_attempt_at = ?, claim_token = claim_token + 1 WHERE id = ?"
# A NULL token (no claim known) matches any: COALESCE(NULL, claim_token) = claim_token.
Q_DEFER = """
UPDATE deliveries SET next_attempt_at = ?
WHERE id = ? AND status = 'pending' AND claim_token = COALESCE(?, claim_token)"""
Q_NEXT_DUE = "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'"
Q_DEPTH = "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
Q_OLDEST_PENDING = "SELECT MIN(created_at) FROM deliveries WHERE status = 'pending'"
# Literal statuses, not parameters: only then can SQLite use the partial indexes.
Q_PENDING_BY_CHANNEL = "SELECT channel, COUNT(*) FROM deliveries WHERE status = 'pending' GROUP BY channel"
Q_DEAD_BY_CHANNEL = "SELECT channel, COUNT(*) FROM deliveries WHERE status = 'dead' GROUP BY channel"
# A finished delivery keeps its last next_attempt_at (COALESCE): the column is never NULL.
Q_DELIVERY_AFTER_ATTEMPT = """
UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = COALESCE(?, next_attempt_at), last_error = ?
WHERE id = ? AND claim_token = COALESCE(?, claim_token)"""
Q_DELIVERY_TOKEN = "SELECT claim_token FROM deliveries WHERE id = ?"  # noqa: S105 (a fencing token)
# attempts restarts at 0 so a replayed delivery gets the full retry schedule again.
Q_REPLAY = """
UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?
WHERE id = ? AND status IN ('delivered', 'dead', 'suppressed')"""
Q_ATTEMPT_INSERT = """
INSERT INTO attempts (delivery_id, number, at, ok, status_code, latency_ms, error, response_excerpt)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)"""
# Registering a watch again re-opens it (a partner retrying the same onboarding session).
Q_WATCH_UPSERT = """
INSERT INTO watches (provider, source, resource_id, params, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (provider, source, resource_id) DO UPDATE SET
    params = excluded.params, ended_at = NULL, end_reason = NULL"""
# A watch a poll result starts (an onboarded device): one that exists already is left as it is.
Q_WATCH_START = """
INSERT INTO watches (provider, source, resource_id, params, created_at) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (provider, source, resource_id) DO NOTHING"""
Q_WATCH_END = """
UPDATE watches SET ended_at = ?, end_reason = ?
WHERE provider = ? AND source = ? AND resource_id = ? AND ended_at IS NULL"""
Q_WATCHES_LIST = """
SELECT provider, source, resource_id, params, created_at, ended_at, end_reason FROM watches
WHERE (?1 IS NULL OR provider = ?1) AND (?2 IS NULL OR source = ?2) AND (?3 = 0 OR ended_at IS NULL)
ORDER BY created_at, resource_id"""
# Keyset pages in primary-key order: a 250,000-watch group is walked without ever being held whole.
Q_WATCHES_PAGE = """
SELECT provider, source, resource_id, params, created_at, ended_at, end_reason FROM watches
WHERE provider = ?1 AND ended_at IS NULL AND (source, resource_id) > (?2, ?3)
  AND (?5 IS NULL OR source = ?5)
ORDER BY source, resource_id LIMIT ?4"""
Q_WATCH_DELETE = "DELETE FROM watches WHERE provider = ? AND source = ? AND resource_id = ?"
Q_ATTEMPTS_OF = """
SELECT delivery_id, number, at, ok, status_code, latency_ms, error, response_excerpt
FROM attempts WHERE delivery_id = ? ORDER BY seq"""


def _ts(when: datetime) -> str:
    global _ts_last
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: the store only takes timezone-aware times")
    # A batch stamps many rows with the same instant (snapshot, event, delivery times of one poll):
    # the last one is remembered. Equal aware datetimes are the same instant, so the same UTC text.
    last_when, last_text = _ts_last
    if when == last_when:
        return last_text
    utc = when if when.tzinfo is UTC else when.astimezone(UTC)
    # isoformat, not strftime: twice as fast, and zero-pads years < 1000.
    text = utc.isoformat(timespec="microseconds")[:-6] + "Z"  # drop "+00:00"
    _ts_last = (when, text)  # one tuple, replaced whole: safe from aiosqlite's thread too
    return text


_ts_last: tuple[datetime, str] = (datetime.min.replace(tzinfo=UTC), "0001-01-01T00:00:00.000000Z")


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_or_none(value: Any) -> str | None:
    return None if value is None else _json(value)


def _load(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


# -- rows <-> values -------------------------------------------------------------------------------

Row = Sequence[Any]


def _snapshot_row(s: Snapshot) -> tuple[Any, ...]:
    k = s.key
    return (
        k.provider,
        k.source,
        k.resource_id,
        _json_or_none(s.state),
        s.digest,
        s.sequence,
        _ts(s.updated_at),
        s.version,
    )


def _snapshot(row: Row) -> Snapshot:
    provider, source, resource_id, state, digest, sequence, updated_at, version = row
    return Snapshot(
        key=ResourceKey(source=source, provider=provider, resource_id=resource_id),
        state=_load(state),
        digest=digest,
        sequence=sequence,
        updated_at=_dt(updated_at),
        version=version,
    )


def _event_row(e: Event) -> tuple[Any, ...]:
    changes = [{"field": c.field, "old": c.old, "new": c.new} for c in e.changes]
    k = e.key
    return (
        e.id,
        e.rule_id,
        e.type,
        e.status,
        e.severity,
        k.provider,
        k.source,
        k.resource_id,
        e.sequence,
        _json(changes),
        _json_or_none(e.state),
        _ts(e.occurred_at),
    )


def _event(row: Row) -> Event:
    (id_, rule_id, type_, status, severity, provider, source, resource_id, sequence, changes, state, at) = row
    event_status: EventStatus = status
    return Event(
        id=id_,
        rule_id=rule_id,
        type=type_,
        status=event_status,
        severity=severity,
        key=ResourceKey(source=source, provider=provider, resource_id=resource_id),
        sequence=sequence,
        changes=tuple(Change(field=c["field"], old=c["old"], new=c["new"]) for c in orjson.loads(changes)),
        state=_load(state),
        occurred_at=_dt(at),
    )


def _delivery_row(d: Delivery) -> tuple[Any, ...]:
    return (
        d.id,
        d.event_id,
        d.channel,
        d.body,
        d.status,
        d.attempts,
        _ts(d.next_attempt_at),
        _ts(d.created_at),
        d.last_error,
        d.group_key,
        d.claim_token,
    )


def _delivery(row: Row, *, next_attempt_at: str | None = None, claim_token: int = 0) -> Delivery:
    id_, event_id, channel, body, status, attempts, next_at, created_at, last_error = row
    delivery_status: DeliveryStatus = status
    return Delivery(
        id=id_,
        event_id=event_id,
        channel=channel,
        body=bytes(body),
        status=delivery_status,
        attempts=attempts,
        next_attempt_at=_dt(next_attempt_at or next_at),
        created_at=_dt(created_at),
        last_error=last_error,
        claim_token=claim_token,
    )


def _attempt_row(a: Attempt) -> tuple[Any, ...]:
    return (
        a.delivery_id,
        a.number,
        _ts(a.at),
        int(a.ok),
        a.status_code,
        a.latency_ms,
        a.error,
        a.response_excerpt,
    )


def _attempt(row: Row) -> Attempt:
    delivery_id, number, at, ok, status_code, latency_ms, error, excerpt = row
    return Attempt(
        delivery_id=delivery_id,
        number=number,
        at=_dt(at),
        ok=bool(ok),
        status_code=status_code,
        latency_ms=latency_ms,
        error=error,
        response_excerpt=excerpt,
    )


def _watch(row: Row) -> Watch:
    return Watch(
        key=ResourceKey(provider=row[0], source=row[1], resource_id=row[2]),
        params=_load(row[3]) or {},
        created_at=_dt(row[4]),
        ended_at=_dt(row[5]) if row[5] else None,
        end_reason=row[6],
    )
