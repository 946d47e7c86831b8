"""Deletes of rule and flap states that leave tombstones (PostgreSQL migration 7), so the other
replicas' mirrors forget those states too (`postgres_changes.state_changes`)."""

from __future__ import annotations

KEY_MATCH = "rule_id = $1 AND provider = $2 AND source = $3 AND resource_id = $4"
RULES_MATCH = "rule_id = ANY($1::text[])"


def delete_leaving_tombstones(table: str, kind: str, where: str) -> str:
    """DELETE FROM `table` WHERE `where`, leaving a tombstone of `kind` per deleted row."""
    # Built from this package's constants only (never user input), once at import.
    return f"""
WITH gone AS (DELETE FROM {table} WHERE {where}
    RETURNING rule_id, provider, source, resource_id)
INSERT INTO state_tombstones (kind, rule_id, provider, source, resource_id, xid, deleted_at)
SELECT '{kind}', rule_id, provider, source, resource_id, pg_current_xact_id(), now() FROM gone
ON CONFLICT (kind, rule_id, provider, source, resource_id) DO UPDATE SET
    xid = excluded.xid, deleted_at = excluded.deleted_at"""  # noqa: S608
