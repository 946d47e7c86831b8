"""Shards of a by-id watch group: which replica-sized slice of a fleet a resource belongs to.

A resource's shard is a stable hash of its id (the first 32 bits of its md5, modulo the shard
count): the same in every replica, in every release and in SQL (PostgreSQL computes it in the page
query, `bridge/store/postgres_sql.py` Q_WATCHES_PAGE), so replicas split a fleet without talking and
a shard's watches never depend on which replica reads them. md5 is a spread, not a secret.
"""

from __future__ import annotations

import hashlib


def shard_of(resource_id: str, count: int) -> int:
    """The shard (0 .. count-1) of `resource_id` among `count`."""
    return int(hashlib.md5(resource_id.encode(), usedforsecurity=False).hexdigest()[:8], 16) % count


def fair_quota(shards: int, members: list[str], me: str) -> int:
    """How many of `shards` the replica `me` may hold when the live `members` split them evenly:
    shards // N each, and one more for the first shards % N members in id order. The quotas add up
    to exactly `shards`, so when every member holds its quota every shard is held (a replica that
    does not see itself among the members counts itself last)."""
    ordered = sorted(set(members) | {me})
    n = len(ordered)
    return shards // n + (1 if ordered.index(me) < shards % n else 0)
