"""Which rule and flap states changed since a replica last looked (#12): migration 7, its SQL, and
`state_changes` (a mixin of `PostgresStore`), so a replica reads the rows other replicas wrote,
not the whole fleet's states, at each poll, tick and acknowledgement.

Every row of `rule_states` and `flap_states` carries the id of the transaction that last wrote it
(`xid`, xid8: 64 bits, never wraps); a delete leaves a tombstone with its transaction's id. A read
takes, in one REPEATABLE READ snapshot, the rows and tombstones with `xid >= since` and the
snapshot's xmin as the next watermark: every transaction with an id below xmin had ended when the
snapshot was taken (so its writes are in it), and every one still running, or not begun, has an id
at or above it, so the next read, from that watermark, sees its writes once it commits. Rows may
come twice (harmless); none is missed. A tombstone of a key that has a row in the snapshot is not a
deletion (the key was written again since) and is left out.

Tombstones are forgotten after an hour (`TOMBSTONE_AGE`, the retention sweep); `state_horizon`
keeps the newest transaction id among those forgotten, and a reader whose watermark is not above it
(it may have missed a deletion) gets every state instead (`full`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from bridge.model import ResourceKey
from bridge.store import postgres_rows as rows_
from bridge.store.base import StateChanges, StateKey
from bridge.store.postgres_flaps import Q_FLAPS_ALL
from bridge.store.sqlite_flap_sql import flap_state

# The default stamps inserts; every upsert's DO UPDATE sets `xid` itself (a default is not applied
# to an update). Existing rows get the migration's own id: a reader's first read is a full one.
MIGRATION_7 = """
ALTER TABLE rule_states ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE flap_states ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX rule_states_by_xid ON rule_states (xid);
CREATE INDEX flap_states_by_xid ON flap_states (xid);
CREATE TABLE state_tombstones (
    kind         text NOT NULL CHECK (kind IN ('rule', 'flap')),
    rule_id      text NOT NULL,
    provider     text NOT NULL,
    source       text NOT NULL,
    resource_id  text NOT NULL,
    xid          xid8 NOT NULL,
    deleted_at   timestamptz NOT NULL,
    PRIMARY KEY (kind, rule_id, provider, source, resource_id)
);
CREATE INDEX state_tombstones_by_xid ON state_tombstones (xid);
CREATE INDEX state_tombstones_by_age ON state_tombstones (deleted_at);
CREATE TABLE state_horizon (pruned_xid xid8 NOT NULL);
INSERT INTO state_horizon (pruned_xid) VALUES ('0')
"""


# The snapshot's xmin is the watermark; `pruned` says whether `since` is still covered.
Q_MARK = """
SELECT pg_snapshot_xmin(pg_current_snapshot()), (SELECT pruned_xid FROM state_horizon)"""
# The columns in the order `rows_.rule_state` and `flap_state` read them (as the full reads).
Q_RULES_SINCE = """
SELECT rule_id, provider, source, resource_id, phase, since, due_at, repeats,
last_fired_at, changes, firing_seq, escalated, escalate_at, acked_by, acked_at, snoozed_until,
snoozed_by FROM rule_states WHERE xid >= $1::xid8"""
Q_FLAPS_SINCE = """
SELECT rule_id, provider, source, resource_id, flips, since, count, first_value, last_value,
    last_change_at, muted, due_at FROM flap_states WHERE xid >= $1::xid8"""
Q_GONE_SINCE = """
SELECT t.kind, t.rule_id, t.provider, t.source, t.resource_id FROM state_tombstones t
WHERE t.xid >= $1::xid8 AND NOT EXISTS (
    SELECT 1 FROM rule_states r WHERE t.kind = 'rule' AND r.rule_id = t.rule_id
        AND r.provider = t.provider AND r.source = t.source AND r.resource_id = t.resource_id)
  AND NOT EXISTS (
    SELECT 1 FROM flap_states f WHERE t.kind = 'flap' AND f.rule_id = t.rule_id
        AND f.provider = t.provider AND f.source = t.source AND f.resource_id = t.resource_id)"""
# Deleting and moving the horizon are one transaction: a reader sees both or neither.
Q_PRUNE_TOMBSTONES = """
WITH gone AS (DELETE FROM state_tombstones WHERE deleted_at < now() - $1::interval RETURNING xid)
SELECT count(*), max(xid) FROM gone"""
Q_HORIZON_MOVE = "UPDATE state_horizon SET pruned_xid = $1 WHERE pruned_xid < $1"


def _same(when: Any) -> Any:
    return when


def _key(row: Any) -> StateKey:
    return (row[1], ResourceKey(provider=row[2], source=row[3], resource_id=row[4]))


class PostgresStateChanges:
    """Mixed into PostgresStore, which provides `_conn` and `_transaction`."""

    def _conn(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Any]:
        async with self._conn() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            yield conn

    async def state_changes(self, since: int | None) -> StateChanges:
        from bridge.store.postgres_sql import Q_RULE_STATES_ALL  # it imports our MIGRATION_7

        async with self._snapshot() as conn:
            # The first statement takes the transaction's snapshot: the watermark is its xmin.
            mark, pruned = await conn.fetchrow(Q_MARK)
            if since is None or since <= int(pruned):
                rules = await conn.fetch(Q_RULE_STATES_ALL)
                flaps = await conn.fetch(Q_FLAPS_ALL)
                gone: list[Any] = []
            else:
                rules = await conn.fetch(Q_RULES_SINCE, since)
                flaps = await conn.fetch(Q_FLAPS_SINCE, since)
                gone = list(await conn.fetch(Q_GONE_SINCE, since))
        return StateChanges(
            watermark=int(mark),
            full=since is None or since <= int(pruned),
            rule_states=tuple(rows_.rule_state(r) for r in rules),
            flap_states=tuple(flap_state(tuple(r), _same) for r in flaps),
            rules_gone=tuple(_key(r) for r in gone if r[0] == "rule"),
            flaps_gone=tuple(_key(r) for r in gone if r[0] == "flap"),
        )

    async def prune_tombstones(self, older_than: timedelta) -> int:
        async with self._transaction() as conn:
            count, newest = await conn.fetchrow(Q_PRUNE_TOMBSTONES, older_than)
            if newest is not None:
                await conn.execute(Q_HORIZON_MOVE, newest)
        return int(count)
