"""SQL of the PostgreSQL store: versioned migrations and every named query, spelled out in full.

The tables mirror the SQLite schema column for column, with PostgreSQL's own types: `timestamptz`
for times, `bytea` for bodies, `boolean` for flags. JSON stays `text` (not `jsonb`): a stored state
must come back byte for byte, key order included, as it does from SQLite. Key columns that are paged
in order use `COLLATE "C"`, so keyset pages and `ORDER BY` agree with SQLite's byte order whatever
the database's locale.
"""

from __future__ import annotations

from bridge.store.postgres_changes import MIGRATION_7
from bridge.store.postgres_flaps import MIGRATION_6
from bridge.store.postgres_tombstones import KEY_MATCH, RULES_MATCH, delete_leaving_tombstones
from bridge.store.postgres_traces import MIGRATION_2

# Delivery fencing (#12): the token of a delivery's current claim (kept here, not imported from
# postgres_cluster, which imports this module).
MIGRATION_4 = "ALTER TABLE deliveries ADD COLUMN claim_token bigint NOT NULL DEFAULT 0"

# (version, statements). A migration runs once, in its own transaction, under an advisory lock, so
# replicas starting together on an empty database cannot both create the schema.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
CREATE TABLE snapshots (
    provider     text COLLATE "C" NOT NULL,
    source       text COLLATE "C" NOT NULL,
    resource_id  text COLLATE "C" NOT NULL,
    state        text,
    digest       text NOT NULL,
    sequence     bigint NOT NULL,
    updated_at   timestamptz NOT NULL,
    PRIMARY KEY (provider, source, resource_id)
);
CREATE TABLE events (
    id           text COLLATE "C" PRIMARY KEY,
    rule_id      text NOT NULL,
    type         text NOT NULL,
    status       text NOT NULL,
    severity     text NOT NULL,
    provider     text NOT NULL,
    source       text NOT NULL,
    resource_id  text NOT NULL,
    sequence     bigint NOT NULL,
    changes      text NOT NULL,
    state        text,
    occurred_at  timestamptz NOT NULL
);
CREATE INDEX events_by_time ON events (occurred_at);
CREATE INDEX events_firing_by_rule ON events (rule_id, occurred_at) WHERE status = 'firing';
CREATE TABLE deliveries (
    id               text COLLATE "C" PRIMARY KEY,
    event_id         text NOT NULL REFERENCES events (id),
    channel          text NOT NULL,
    body             bytea NOT NULL,
    status           text NOT NULL CHECK (status IN
                         ('pending', 'delivered', 'dead', 'suppressed', 'held', 'digested')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    last_error       text,
    group_key        text
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_by_time ON deliveries (created_at);
CREATE INDEX deliveries_held ON deliveries (channel, group_key, created_at) WHERE status = 'held';
CREATE INDEX deliveries_dead ON deliveries (channel) WHERE status = 'dead';
CREATE TABLE attempts (
    seq               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id       text NOT NULL REFERENCES deliveries (id),
    number            integer NOT NULL,
    at                timestamptz NOT NULL,
    ok                boolean NOT NULL,
    status_code       integer,
    latency_ms        double precision NOT NULL,
    error             text,
    response_excerpt  text
);
CREATE INDEX attempts_by_delivery ON attempts (delivery_id, seq);
CREATE TABLE watches (
    provider     text COLLATE "C" NOT NULL,
    source       text COLLATE "C" NOT NULL,
    resource_id  text COLLATE "C" NOT NULL,
    params       text NOT NULL,
    created_at   timestamptz NOT NULL,
    ended_at     timestamptz,
    end_reason   text,
    PRIMARY KEY (provider, source, resource_id)
);
CREATE TABLE rule_states (
    rule_id        text NOT NULL,
    provider       text NOT NULL,
    source         text NOT NULL,
    resource_id    text NOT NULL,
    phase          text NOT NULL CHECK (phase IN ('pending', 'firing', 'idle')),
    since          timestamptz NOT NULL,
    due_at         timestamptz,
    repeats        integer NOT NULL DEFAULT 0,
    last_fired_at  timestamptz,
    changes        text NOT NULL,
    PRIMARY KEY (rule_id, provider, source, resource_id)
);
CREATE TABLE silences (
    id          text COLLATE "C" PRIMARY KEY,
    rule        text,
    source      text,
    resource    text,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    comment     text NOT NULL,
    created_by  text NOT NULL,
    created_at  timestamptz NOT NULL
)
""",
    ),
    (2, MIGRATION_2),  # #14: evaluation traces, deliveries by event
    (
        # Replicas: snapshot writes compare-and-swap on `version`; one event per transition.
        3,
        """
ALTER TABLE snapshots ADD COLUMN version bigint NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX events_transition
    ON events (rule_id, provider, source, resource_id, sequence) WHERE sequence > 0;
CREATE TABLE leases (
    name        text COLLATE "C" PRIMARY KEY,
    holder      text NOT NULL,
    token       bigint NOT NULL,
    expires_at  timestamptz NOT NULL
)
""",
    ),
    (4, MIGRATION_4),  # replicas: a delivery's claim carries a fencing token
    (
        # #14: a firing's number, its escalation, and who acknowledged or snoozed it.
        5,
        """
ALTER TABLE rule_states ADD COLUMN firing_seq bigint;
ALTER TABLE rule_states ADD COLUMN escalated integer NOT NULL DEFAULT 0;
ALTER TABLE rule_states ADD COLUMN escalate_at timestamptz;
ALTER TABLE rule_states ADD COLUMN acked_by text;
ALTER TABLE rule_states ADD COLUMN acked_at timestamptz;
ALTER TABLE rule_states ADD COLUMN snoozed_until timestamptz;
ALTER TABLE rule_states ADD COLUMN snoozed_by text
""",
    ),
    (6, MIGRATION_6),  # #14 flap detection states
    (7, MIGRATION_7),  # #12: which rule and flap states changed since a replica last looked
)
SCHEMA_VERSION = MIGRATIONS[-1][0]

Q_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS wattbridge_schema (version integer NOT NULL)"
Q_VERSION_GET = "SELECT COALESCE(MAX(version), 0) FROM wattbridge_schema"
Q_VERSION_SET = "INSERT INTO wattbridge_schema (version) VALUES ($1)"
# One lock id for "migrating the Wattbridge schema" (any constant; it only has to be ours).
MIGRATION_LOCK = 0x57A77B51

Q_SNAPSHOT_GET = """
SELECT provider, source, resource_id, state, digest, sequence,
updated_at, version FROM snapshots WHERE provider = $1 AND source = $2 AND resource_id = $3"""
Q_SNAPSHOTS_OF_SOURCE = """
SELECT provider, source, resource_id, state, digest, sequence,
updated_at, version FROM snapshots WHERE provider = $1 AND source = $2"""
Q_DIGESTS_OF_SOURCE = "SELECT resource_id, digest FROM snapshots WHERE provider = $1 AND source = $2"
Q_SNAPSHOTS_BY_IDS = (
    "SELECT provider, source, resource_id, state, digest, sequence, updated_at, version FROM snapshots "
    "WHERE provider = $1 AND source = $2 AND resource_id = ANY($3::text[])"
)
# Compare-and-swap, every row of a commit in one statement: a row lands when it is new or when the
# stored version is the one before it; RETURNING names what landed, so the store can tell who lost.
Q_SNAPSHOT_CAS = """
INSERT INTO snapshots (provider, source, resource_id, state, digest, sequence, updated_at, version)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
    $7::timestamptz[], $8::bigint[])
ON CONFLICT (provider, source, resource_id) DO UPDATE SET
    state = excluded.state, digest = excluded.digest,
    sequence = excluded.sequence, updated_at = excluded.updated_at, version = excluded.version
WHERE snapshots.version = excluded.version - 1
RETURNING provider, source, resource_id"""
Q_EVENT_INSERT = """
INSERT INTO events (id, rule_id, type, status, severity, provider, source, resource_id, sequence,
    changes, state, occurred_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (id) DO NOTHING"""
Q_EVENT_GET = """
SELECT id, rule_id, type, status, severity, provider, source, resource_id, sequence,
changes, state, occurred_at FROM events WHERE id = $1"""
Q_EVENTS_LATEST = """
SELECT id, rule_id, type, status, severity, provider, source, resource_id,
sequence, changes, state, occurred_at FROM events ORDER BY occurred_at DESC, id LIMIT $1"""
Q_DELIVERY_INSERT = """
INSERT INTO deliveries (id, event_id, channel, body, status, attempts, next_attempt_at, created_at,
    last_error, group_key, claim_token) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (id) DO NOTHING"""
Q_DELIVERY_GET = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at,
created_at, last_error FROM deliveries WHERE id = $1"""
Q_DELIVERIES_LIST = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at,
    last_error FROM deliveries
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR channel = $2)
ORDER BY created_at DESC, id LIMIT $3"""
# Claim and lease in one statement. SKIP LOCKED: two workers (or two replicas) claiming at the same
# instant take disjoint rows instead of waiting on each other; the lease (next_attempt_at pushed
# forward) is what keeps a claimed row away from the next claim once this transaction commits. Each
# claim is a new fencing token: a record made under an older one is refused.
Q_CLAIM = """
WITH due AS (
    SELECT id, next_attempt_at AS was FROM deliveries
    WHERE status = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED
)
UPDATE deliveries d SET next_attempt_at = $2, claim_token = d.claim_token + 1 FROM due WHERE d.id = due.id
RETURNING d.id, d.event_id, d.channel, d.body, d.status, d.attempts, d.next_attempt_at, d.created_at,
    d.last_error, due.was, d.claim_token"""
Q_NEXT_DUE = "SELECT MIN(next_attempt_at) FROM deliveries WHERE status = 'pending'"
Q_DEFER = """
UPDATE deliveries SET next_attempt_at = $1
WHERE id = $2 AND status = 'pending' AND claim_token = COALESCE($3::bigint, claim_token)"""
Q_DEPTH = "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
Q_OLDEST_PENDING = "SELECT MIN(created_at) FROM deliveries WHERE status = 'pending'"
Q_PENDING_BY_CHANNEL = "SELECT channel, COUNT(*) FROM deliveries WHERE status = 'pending' GROUP BY channel"
Q_DEAD_BY_CHANNEL = "SELECT channel, COUNT(*) FROM deliveries WHERE status = 'dead' GROUP BY channel"
# Locked (in id order: two batches never wait on each other in a cycle), so no claim can take one
# of them between this read of their tokens and the records.
Q_DELIVERIES_EXISTING = (
    "SELECT id, claim_token FROM deliveries WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE"
)
Q_DELIVERY_AFTER_ATTEMPT = """
UPDATE deliveries SET status = $1, attempts = $2, next_attempt_at = COALESCE($3, next_attempt_at),
    last_error = $4
WHERE id = $5"""
Q_ATTEMPT_INSERT = """
INSERT INTO attempts (delivery_id, number, at, ok, status_code, latency_ms, error, response_excerpt)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"""
Q_ATTEMPTS_OF = """
SELECT delivery_id, number, at, ok, status_code, latency_ms, error, response_excerpt
FROM attempts WHERE delivery_id = $1 ORDER BY seq"""
Q_REPLAY = """
UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1
WHERE id = ANY($2::text[]) AND status IN ('delivered', 'dead', 'suppressed')"""

Q_WATCH_UPSERT = """
INSERT INTO watches (provider, source, resource_id, params, created_at, ended_at,
    end_reason) VALUES ($1, $2, $3, $4, $5, NULL, NULL)
ON CONFLICT (provider, source, resource_id) DO UPDATE SET
    params = excluded.params, ended_at = NULL, end_reason = NULL"""
# A watch a poll result starts (an onboarded device): one that exists already is left as it is.
Q_WATCH_START = """
INSERT INTO watches (provider, source, resource_id, params, created_at, ended_at,
    end_reason) VALUES ($1, $2, $3, $4, $5, NULL, NULL)
ON CONFLICT (provider, source, resource_id) DO NOTHING"""
Q_WATCH_END = """
UPDATE watches SET ended_at = $1, end_reason = $2
WHERE provider = $3 AND source = $4 AND resource_id = $5 AND ended_at IS NULL"""
Q_WATCH_DELETE = "DELETE FROM watches WHERE provider = $1 AND source = $2 AND resource_id = $3"
Q_WATCHES_LIST = """
SELECT provider, source, resource_id, params, created_at, ended_at, end_reason FROM watches
WHERE ($1::text IS NULL OR provider = $1) AND ($2::text IS NULL OR source = $2)
  AND (NOT $3::boolean OR ended_at IS NULL)
ORDER BY created_at, resource_id"""
Q_WATCHES_PAGE = """
SELECT provider, source, resource_id, params, created_at, ended_at, end_reason FROM watches
WHERE provider = $1 AND ended_at IS NULL AND (source, resource_id) > ($2, $3)
  AND ($5::text IS NULL OR source = $5)
  AND ($6::int IS NULL OR ('x' || substr(md5(resource_id), 1, 8))::bit(32)::bigint % $6 = $7)
ORDER BY source, resource_id LIMIT $4"""

# A write that does not itself acknowledge or snooze keeps an acknowledgement or snooze of the
# same firing: a replica that read the state before an ack landed must not undo it (#14).
Q_RULE_STATE_UPSERT = """
INSERT INTO rule_states (rule_id, provider, source, resource_id, phase, since, due_at, repeats,
    last_fired_at, changes, firing_seq, escalated, escalate_at, acked_by, acked_at, snoozed_until,
    snoozed_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (rule_id, provider, source, resource_id) DO UPDATE SET
    phase = excluded.phase, since = excluded.since, due_at = excluded.due_at,
    repeats = excluded.repeats, last_fired_at = excluded.last_fired_at, changes = excluded.changes,
    firing_seq = excluded.firing_seq, escalated = excluded.escalated,
    escalate_at = excluded.escalate_at,
    acked_by = CASE WHEN excluded.acked_by IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS NOT DISTINCT FROM rule_states.firing_seq
        THEN rule_states.acked_by ELSE excluded.acked_by END,
    acked_at = CASE WHEN excluded.acked_at IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS NOT DISTINCT FROM rule_states.firing_seq
        THEN rule_states.acked_at ELSE excluded.acked_at END,
    snoozed_until = CASE WHEN excluded.snoozed_until IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS NOT DISTINCT FROM rule_states.firing_seq
        THEN rule_states.snoozed_until ELSE excluded.snoozed_until END,
    snoozed_by = CASE WHEN excluded.snoozed_by IS NULL AND excluded.phase = 'firing'
        AND excluded.firing_seq IS NOT DISTINCT FROM rule_states.firing_seq
        THEN rule_states.snoozed_by ELSE excluded.snoozed_by END,
    xid = pg_current_xact_id()"""
# Every delete leaves a tombstone (migration 7, `postgres_changes.py`) in the same statement, so
# other replicas' mirrors forget the state too.
Q_RULE_STATE_DELETE = delete_leaving_tombstones("rule_states", "rule", KEY_MATCH)
Q_RULE_STATES_DELETE_RULES = delete_leaving_tombstones("rule_states", "rule", RULES_MATCH)
Q_RULE_STATES_ALL = """
SELECT rule_id, provider, source, resource_id, phase, since, due_at, repeats,
last_fired_at, changes, firing_seq, escalated, escalate_at, acked_by, acked_at, snoozed_until,
snoozed_by FROM rule_states"""

Q_SILENCE_INSERT = """
INSERT INTO silences (id, rule, source, resource, starts_at, ends_at, comment,
created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"""
Q_SILENCES_LIST = """
SELECT id, rule, source, resource, starts_at, ends_at, comment, created_by,
    created_at FROM silences WHERE ($1::timestamptz IS NULL OR ends_at > $1)
ORDER BY starts_at, id"""
Q_SILENCE_GET = """
SELECT id, rule, source, resource, starts_at, ends_at, comment, created_by,
created_at FROM silences WHERE id = $1"""
Q_SILENCE_EXPIRE = "UPDATE silences SET ends_at = $1 WHERE id = $2 AND ends_at > $1"

Q_HELD_GROUPS = """
SELECT h.channel, h.group_key, MIN(h.created_at), COUNT(*),
       (SELECT MAX(d.created_at) FROM deliveries d
        WHERE d.channel = h.channel AND d.group_key = h.group_key
          AND d.status IN ('pending', 'delivered', 'dead'))
FROM deliveries h WHERE h.status = 'held' GROUP BY h.channel, h.group_key"""
Q_HELD_OF_GROUP = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at,
    last_error FROM deliveries WHERE status = 'held' AND channel = $1 AND group_key = $2
ORDER BY created_at, id"""
Q_MARK_DIGESTED = (
    "UPDATE deliveries SET status = 'digested', last_error = $1 WHERE id = $2 AND status = 'held'"
)

Q_EVENTS_PAGE = """
SELECT id, rule_id, type, status, severity, provider, source, resource_id, sequence, changes,
    state, occurred_at FROM events
WHERE ($1::text IS NULL OR rule_id = $1) AND ($2::text IS NULL OR source = $2)
  AND ($3::text IS NULL OR provider = $3) AND ($4::text IS NULL OR resource_id = $4)
  AND ($5::timestamptz IS NULL OR occurred_at >= $5) AND ($6::timestamptz IS NULL OR occurred_at < $6)
  AND ($7::timestamptz IS NULL OR occurred_at < $7 OR (occurred_at = $7 AND id < $8))
ORDER BY occurred_at DESC, id DESC LIMIT $9"""
Q_DELIVERIES_PAGE = """
SELECT id, event_id, channel, body, status, attempts, next_attempt_at, created_at,
    last_error FROM deliveries
WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR channel = $2)
  AND ($3::text IS NULL OR event_id = $3)
  AND ($4::timestamptz IS NULL OR created_at < $4 OR (created_at = $4 AND id < $5))
ORDER BY created_at DESC, id DESC LIMIT $6"""
Q_LAST_FIRED = "SELECT rule_id, MAX(occurred_at) FROM events GROUP BY rule_id"
Q_LAST_FIRINGS = """
SELECT r, (SELECT MAX(occurred_at) FROM events WHERE rule_id = r AND status = 'firing')
FROM unnest($1::text[]) AS r"""
Q_RESOURCE_COUNTS = """
SELECT source, COUNT(*) FROM snapshots
WHERE provider = $1 AND state IS NOT NULL AND resource_id <> '' AND source NOT LIKE 'bridge.%'
GROUP BY source"""

# A lease is taken when free, expired, or already ours; the fencing token grows on every change of
# holder, so a write fenced with an old token (a replica that lost its lease) can be refused.
Q_LEASE_ACQUIRE = """
INSERT INTO leases (name, holder, token, expires_at) VALUES ($1, $2, 1, $4)
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder, expires_at = excluded.expires_at,
    token = CASE WHEN leases.holder = excluded.holder THEN leases.token ELSE leases.token + 1 END
WHERE leases.holder = excluded.holder OR leases.expires_at <= $3
RETURNING token"""
Q_LEASE_RENEW = "UPDATE leases SET expires_at = $3 WHERE holder = $1 AND expires_at > $2"
# Released, not deleted: the row keeps its token, so the next holder's is greater (a deleted row
# would start again at 1, and a zombie's old token 1 would pass the fence).
Q_LEASE_RELEASE = """
UPDATE leases SET holder = '', expires_at = '-infinity' WHERE holder = $1 AND name = ANY($2::text[])"""
Q_LEASES_HELD = "SELECT name FROM leases WHERE holder = $1 AND expires_at > $2 ORDER BY name"
Q_LEASE_HOLDERS = """
SELECT name, holder, expires_at FROM leases WHERE starts_with(name, $1) AND expires_at > $2 ORDER BY name"""
