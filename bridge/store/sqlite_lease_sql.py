"""SQL of the SQLite store's leases: acquiring, renewing, releasing and listing named leases,
and the fence check a fenced write makes inside its transaction (`FencedOut` when the lease moved)."""

from __future__ import annotations

import sqlite3

import aiosqlite

from bridge.errors import FencedOut
from bridge.store.base import Fence

Q_LEASE_ACQUIRE = """
INSERT INTO leases (name, holder, token, expires_at) VALUES (?1, ?2, 1, ?4)
ON CONFLICT (name) DO UPDATE SET
    holder = excluded.holder, expires_at = excluded.expires_at,
    token = CASE WHEN leases.holder = excluded.holder THEN leases.token ELSE leases.token + 1 END
WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3
RETURNING token"""
Q_LEASE_RENEW = "UPDATE leases SET expires_at = ?3 WHERE holder = ?1 AND expires_at > ?2"
# Released, not deleted: the row keeps its token, so the next holder's is greater (a deleted row
# would start again at 1, and a zombie's old token 1 would pass the fence).
Q_LEASE_RELEASE = """
UPDATE leases SET holder = '', expires_at = ''
WHERE holder = ? AND name IN (SELECT value FROM json_each(?))"""
Q_FENCE = "SELECT token FROM leases WHERE name = ? AND holder = ?"
Q_LEASES_HELD = "SELECT name FROM leases WHERE holder = ? AND expires_at > ? ORDER BY name"
Q_LEASE_HOLDERS = """
SELECT name, holder, expires_at FROM leases
WHERE substr(name, 1, length(?1)) = ?1 AND expires_at > ?2 ORDER BY name"""


def fence_token(conn: sqlite3.Connection, fence: Fence | None) -> None:
    """Raise FencedOut unless `fence`'s holder still holds its lease with its token (inside the
    write's transaction, so no takeover can come between the check and the write)."""
    if fence is None:
        return
    row = conn.execute(Q_FENCE, (fence.name, fence.holder)).fetchone()
    if row is None or int(row[0]) != fence.token:
        raise FencedOut(fence.name, fence.token)


async def check_fence(db: aiosqlite.Connection, fence: Fence | None) -> None:
    """`fence_token` for a transaction on the aiosqlite connection."""
    if fence is None:
        return
    rows = list(await db.execute_fetchall(Q_FENCE, (fence.name, fence.holder)))
    if not rows or int(rows[0][0]) != fence.token:
        raise FencedOut(fence.name, fence.token)
