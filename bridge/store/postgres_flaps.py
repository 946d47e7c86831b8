"""The PostgreSQL store's flap detection states (#14, `flap`): the SQL (migration 6)
and a mixin over the store's `_fetch` / `_transaction`, mirroring SQLite's.
The row layout and its mapping are `sqlite_flap_sql.py`'s, with `timestamptz` times."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bridge.model import FlapState
from bridge.store import postgres_rows as rows_
from bridge.store.postgres_tombstones import KEY_MATCH, RULES_MATCH, delete_leaving_tombstones
from bridge.store.sqlite_flap_sql import flap_key, flap_row, flap_state

MIGRATION_6 = """
CREATE TABLE flap_states (
    rule_id         text NOT NULL,
    provider        text NOT NULL,
    source          text NOT NULL,
    resource_id     text NOT NULL,
    flips           text NOT NULL,
    since           timestamptz,
    count           integer NOT NULL DEFAULT 0,
    first_value     text,
    last_value      text,
    last_change_at  timestamptz,
    muted           integer NOT NULL DEFAULT 0,
    due_at          timestamptz,
    PRIMARY KEY (rule_id, provider, source, resource_id)
)
"""

Q_FLAP_UPSERT = """
INSERT INTO flap_states (rule_id, provider, source, resource_id, flips, since, count, first_value,
    last_value, last_change_at, muted, due_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (rule_id, provider, source, resource_id) DO UPDATE SET
    flips = excluded.flips, since = excluded.since, count = excluded.count,
    first_value = excluded.first_value, last_value = excluded.last_value,
    last_change_at = excluded.last_change_at, muted = excluded.muted, due_at = excluded.due_at,
    xid = pg_current_xact_id()"""
# Every delete leaves a tombstone (migration 7, `postgres_changes.py`) in the same statement.
Q_FLAP_DELETE = delete_leaving_tombstones("flap_states", "flap", KEY_MATCH)
Q_FLAPS_DELETE_RULES = delete_leaving_tombstones("flap_states", "flap", RULES_MATCH)
Q_FLAPS_ALL = """
SELECT rule_id, provider, source, resource_id, flips, since, count, first_value, last_value,
    last_change_at, muted, due_at FROM flap_states"""


def _same(when: datetime) -> datetime:
    return when


def pg_flap_row(s: FlapState) -> tuple[Any, ...]:
    return flap_row(s, rows_.aware)


def flap_batches(flaps: Sequence[FlapState]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """What a commit writes for these states: upserts, and deletes of the forgettable ones."""
    return [
        (Q_FLAP_UPSERT, [pg_flap_row(f) for f in flaps if not f.forgettable]),
        (Q_FLAP_DELETE, [flap_key(f) for f in flaps if f.forgettable]),
    ]


class PostgresFlaps:
    """Mixed into PostgresStore, which provides `_fetch` and `_transaction`."""

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def list_flap_states(self) -> list[FlapState]:
        return [flap_state(tuple(r), _same) for r in await self._fetch(Q_FLAPS_ALL)]

    async def save_flap_states(self, states: Sequence[FlapState]) -> None:
        if not states:
            return
        async with self._transaction() as conn:
            for query, batch in flap_batches(states):
                if batch:
                    await conn.executemany(query, batch)
