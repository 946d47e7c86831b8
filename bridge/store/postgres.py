"""The shared store: PostgreSQL through an asyncpg pool, for one or several `wattbridge run` replicas.

Its promise is the Store protocol's, as SQLite's: each `commit` is ONE transaction (snapshots,
events, deliveries, watch ends and rule states together, idempotent by id), and `claim_due` leases
work without holding a lock across a send. A claim is one `UPDATE … FOR UPDATE SKIP LOCKED`, so
workers on several replicas claim disjoint deliveries. The schema is versioned (`wattbridge_schema`)
and migrated on open under an advisory lock.

Its reads for ops and the admin API are `postgres_api.py`'s; leases and notifications
`postgres_cluster.py`'s, traces `postgres_traces.py`'s, flap states `postgres_flaps.py`'s, what changed
since a replica last looked (`state_changes`) `postgres_changes.py`'s (mixins).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bridge.errors import CommitConflict, StoreError
from bridge.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    PollResult,
    ResourceKey,
    RuleState,
    Silence,
    Snapshot,
    Trace,
    Watch,
)
from bridge.store import postgres_rows as rows_
from bridge.store import postgres_sql as q
from bridge.store.base import (
    AttemptOutcome,
    Fence,
    HeldGroup,
    OutboxCounts,
    Recorded,
)
from bridge.store.postgres_api import PostgresApiReads
from bridge.store.postgres_changes import PostgresStateChanges
from bridge.store.postgres_cluster import PostgresCluster, check_fence
from bridge.store.postgres_flaps import Q_FLAPS_DELETE_RULES, PostgresFlaps, flap_batches
from bridge.store.postgres_traces import Q_TRACE_INSERT, PostgresTraces, trace_row

# What a broken connection, a refused login or a failed statement raise: all become StoreError.
_DB_ERRORS: tuple[type[BaseException], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def redact(url: str) -> str:
    """The URL without its password: what errors and logs may show."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _count(status: str) -> int:
    """Rows touched, from asyncpg's command tag (`UPDATE 3`, `DELETE 0`)."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresStore(PostgresCluster, PostgresTraces, PostgresFlaps, PostgresStateChanges, PostgresApiReads):
    """The Store protocol on one PostgreSQL database (and schema, by default `public`)."""

    def __init__(self, url: str, *, schema: str | None = None, pool_size: int = 10) -> None:
        self.url = url
        self._where = redact(url) + (f" (schema {schema})" if schema else "")
        self._schema = schema
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None

    shared = True  # several replicas may write one database

    # -- lifecycle -------------------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        settings = {"search_path": self._schema} if self._schema else {}
        try:
            pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self._pool_size,
                server_settings=settings,
                timeout=10,
                command_timeout=30,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, ValueError, TimeoutError) as exc:
            raise StoreError(f"cannot open PostgreSQL store {self._where}: {exc}") from exc
        try:
            async with pool.acquire() as conn:
                await self._migrate(conn)
                self._schema_name = str(await conn.fetchval("SELECT current_schema()"))
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, _DB_ERRORS):
                raise StoreError(f"cannot open PostgreSQL store {self._where}: {exc}") from exc
            raise
        self._pool = pool

    async def _migrate(self, conn: Any) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", q.MIGRATION_LOCK)
            await conn.execute(q.Q_VERSION_TABLE)
            version = int(await conn.fetchval(q.Q_VERSION_GET))
            if version > q.SCHEMA_VERSION:
                raise StoreError(
                    f"PostgreSQL store {self._where} has schema version {version}, newer than this "
                    f"Wattbridge understands ({q.SCHEMA_VERSION}): upgrade Wattbridge first"
                )
            for number, statements in q.MIGRATIONS:
                if number > version:
                    await conn.execute(statements)
                    await conn.execute(q.Q_VERSION_SET, number)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    # -- plumbing --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _DB_ERRORS as exc:
            raise StoreError(f"PostgreSQL store {self._where}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Any]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._conn() as conn:
            return list(await conn.fetch(query, *args))

    async def _execute(self, query: str, *args: Any) -> int:
        async with self._transaction() as conn:
            return _count(await conn.execute(query, *args))

    # -- snapshots and commit --------------------------------------------------------------------

    async def get_snapshot(self, key: ResourceKey) -> Snapshot | None:
        found = await self._fetch(q.Q_SNAPSHOT_GET, key.provider, key.source, key.resource_id)
        return rows_.snapshot(found[0]) if found else None

    async def get_snapshots(self, provider: str, source: str) -> dict[str, Snapshot]:
        found = await self._fetch(q.Q_SNAPSHOTS_OF_SOURCE, provider, source)
        return {s.key.resource_id: s for s in map(rows_.snapshot, found)}

    async def get_digests(self, provider: str, source: str) -> dict[str, str]:
        return {r[0]: r[1] for r in await self._fetch(q.Q_DIGESTS_OF_SOURCE, provider, source)}

    async def get_snapshots_by_id(
        self, provider: str, source: str, resource_ids: Sequence[str]
    ) -> dict[str, Snapshot]:
        if not resource_ids:
            return {}
        found = await self._fetch(q.Q_SNAPSHOTS_BY_IDS, provider, source, list(resource_ids))
        return {s.key.resource_id: s for s in map(rows_.snapshot, found)}

    async def commit(self, results: Sequence[PollResult], *, fence: Fence | None = None) -> None:
        if not results:
            return
        try:
            snapshots = [rows_.snapshot_row(r.snapshot) for r in results]
            events = [rows_.event_row(e) for r in results for e in r.events]
            deliveries = [rows_.delivery_row(d) for r in results for d in r.deliveries]
            ended = [
                (rows_.aware(r.snapshot.updated_at), r.end_watch, k.provider, k.source, k.resource_id)
                for r in results
                if r.end_watch is not None
                for k in (r.snapshot.key,)
            ]
            started = [rows_.watch_row(w) for r in results if (w := r.start_watch) is not None]
            states = [st for r in results for st in r.rule_states]
            forget = [rows_.rule_state_key(st) for st in states if st.forgettable]
            keep = [rows_.rule_state_row(st) for st in states if not st.forgettable]
            traces = [trace_row(t) for r in results for t in r.traces]
            flaps = flap_batches([f for r in results for f in r.flaps])
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot serialise a poll result: {exc}") from exc
        batches = [
            (q.Q_DELIVERY_INSERT, deliveries),
            (q.Q_WATCH_END, ended),
            (q.Q_WATCH_START, started),
            (q.Q_RULE_STATE_UPSERT, keep),
            (q.Q_RULE_STATE_DELETE, forget),
            (Q_TRACE_INSERT, traces),
            *flaps,
        ]
        # Wake the other replicas only for work they may take: a delivery leased to this replica's
        # worker (a hand-over: due at its lease's end, after its creation) is not theirs.
        due = any(
            d.status == "pending" and d.next_attempt_at <= d.created_at for r in results for d in r.deliveries
        )
        async with self._transaction() as conn:
            await check_fence(conn, fence)
            landed = await conn.fetch(q.Q_SNAPSHOT_CAS, *map(list, zip(*snapshots, strict=True)))
            if len(landed) < len(snapshots):  # another writer got there first: write nothing
                won = {tuple(r) for r in landed}
                raise CommitConflict([rows_.key_of(r) for r in snapshots if tuple(r[:3]) not in won])
            try:
                if events:
                    await conn.executemany(q.Q_EVENT_INSERT, events)
            except asyncpg.UniqueViolationError as exc:
                # A backstop behind the compare-and-swap (which row lost is not said: all of the
                # batch's evented resources are left out, and read again by the next poll).
                if exc.constraint_name != "events_transition":
                    raise
                raise CommitConflict(list(dict.fromkeys(rows_.key_of(e[5:8]) for e in events))) from None
            for query, batch in batches:
                if batch:
                    await conn.executemany(query, batch)
            if due:
                await self._notify_outbox(conn)

    # -- outbox ----------------------------------------------------------------------------------

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[Delivery]:
        async with self._transaction() as conn:
            claimed = list(await conn.fetch(q.Q_CLAIM, rows_.aware(now), now + lease, limit))
        claimed.sort(key=lambda r: (r["was"], r["created_at"], r["id"]))  # RETURNING has no order
        return [replace(rows_.delivery(r), claim_token=int(r["claim_token"])) for r in claimed]

    async def defer(
        self, due: Sequence[tuple[str, datetime]], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        known = tokens or {}
        rows = [(rows_.aware(at), delivery_id, known.get(delivery_id)) for delivery_id, at in due]
        async with self._transaction() as conn:
            await conn.executemany(q.Q_DEFER, rows)

    async def next_due_at(self) -> datetime | None:
        async with self._conn() as conn:
            at: datetime | None = await conn.fetchval(q.Q_NEXT_DUE)
        return at

    async def outbox_depth(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval(q.Q_DEPTH))

    async def oldest_pending_at(self) -> datetime | None:
        async with self._conn() as conn:
            at: datetime | None = await conn.fetchval(q.Q_OLDEST_PENDING)
        return at

    async def outbox_counts(self) -> OutboxCounts:
        async with self._conn() as conn:
            pending = await conn.fetch(q.Q_PENDING_BY_CHANNEL)
            dead = await conn.fetch(q.Q_DEAD_BY_CHANNEL)
            oldest = await conn.fetchval(q.Q_OLDEST_PENDING)
        return OutboxCounts(
            pending={str(r[0]): int(r[1]) for r in pending},
            dead={str(r[0]): int(r[1]) for r in dead},
            oldest_pending_at=oldest,
        )

    async def record_attempt(
        self, attempt: Attempt, *, status: DeliveryStatus, next_attempt_at: datetime | None
    ) -> None:
        outcome = AttemptOutcome(attempt=attempt, status=status, next_attempt_at=next_attempt_at)
        if (await self.record_attempts([outcome])).missing:
            raise StoreError(f"no delivery {attempt.delivery_id!r} to record an attempt for")

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        if not outcomes:
            return Recorded()
        ids = [o.attempt.delivery_id for o in outcomes]
        async with self._transaction() as conn:
            tokens = {r[0]: int(r[1]) for r in await conn.fetch(q.Q_DELIVERIES_EXISTING, ids)}
            refused = {
                o.attempt.delivery_id
                for o in outcomes
                if o.attempt.delivery_id in tokens
                and o.claim_token is not None
                and tokens[o.attempt.delivery_id] != o.claim_token
            }
            present = [o for o in outcomes if o.attempt.delivery_id in tokens.keys() - refused]
            if present:
                await conn.executemany(
                    q.Q_DELIVERY_AFTER_ATTEMPT,
                    [
                        (
                            o.status,
                            o.attempt.number,
                            rows_.maybe_aware(o.next_attempt_at),
                            None if o.attempt.ok else o.attempt.error,
                            o.attempt.delivery_id,
                        )
                        for o in present
                    ],
                )
                await conn.executemany(q.Q_ATTEMPT_INSERT, [rows_.attempt_row(o.attempt) for o in present])
            fallbacks = [rows_.delivery_row(o.fallback) for o in present if o.fallback is not None]
            if fallbacks:
                await conn.executemany(q.Q_DELIVERY_INSERT, fallbacks)
                await self._notify_outbox(conn)
        return Recorded(missing=frozenset(set(ids) - tokens.keys()), refused=frozenset(refused))

    async def replay(self, delivery_ids: Sequence[str], now: datetime) -> int:
        if not delivery_ids:
            return 0
        async with self._transaction() as conn:
            args = (rows_.aware(now), list(dict.fromkeys(delivery_ids)))
            replayed = _count(await conn.execute(q.Q_REPLAY, *args))
            if replayed:
                await self._notify_outbox(conn)
        return replayed

    # -- watches ---------------------------------------------------------------------------------

    async def add_watch(self, watch: Watch) -> None:
        await self._execute(q.Q_WATCH_UPSERT, *rows_.watch_row(watch))

    async def end_watch(self, key: ResourceKey, *, reason: str, at: datetime) -> bool:
        args = (rows_.aware(at), reason, key.provider, key.source, key.resource_id)
        return await self._execute(q.Q_WATCH_END, *args) > 0

    async def delete_watch(self, key: ResourceKey) -> bool:
        return await self._execute(q.Q_WATCH_DELETE, key.provider, key.source, key.resource_id) > 0

    async def list_watches(
        self, *, provider: str | None = None, source: str | None = None, active_only: bool = True
    ) -> list[Watch]:
        return [rows_.watch(r) for r in await self._fetch(q.Q_WATCHES_LIST, provider, source, active_only)]

    async def list_watches_page(
        self,
        provider: str,
        *,
        source: str | None = None,
        after: tuple[str, str] | None,
        limit: int,
        shard: tuple[int, int] | None = None,
    ) -> list[Watch]:
        after_source, after_id = after or ("", "")
        k, n = shard if shard is not None else (None, None)
        found = await self._fetch(q.Q_WATCHES_PAGE, provider, after_source, after_id, limit, source, n, k)
        return [rows_.watch(r) for r in found]

    # -- rule states and silences ----------------------------------------------------------------

    async def list_rule_states(self) -> list[RuleState]:
        return [rows_.rule_state(r) for r in await self._fetch(q.Q_RULE_STATES_ALL)]

    async def save_rule_states(self, states: Sequence[RuleState]) -> None:
        if not states:
            return
        forget = [rows_.rule_state_key(st) for st in states if st.forgettable]
        keep = [rows_.rule_state_row(st) for st in states if not st.forgettable]
        async with self._transaction() as conn:
            if keep:
                await conn.executemany(q.Q_RULE_STATE_UPSERT, keep)
            if forget:
                await conn.executemany(q.Q_RULE_STATE_DELETE, forget)

    async def record_ack(self, state: RuleState, trace: Trace) -> None:
        row, traced = rows_.rule_state_row(state), trace_row(trace)
        async with self._transaction() as conn:
            await conn.execute(q.Q_RULE_STATE_UPSERT, *row)
            await conn.execute(Q_TRACE_INSERT, *traced)

    async def delete_rule_states(self, rule_ids: Sequence[str]) -> int:
        await self._execute(Q_FLAPS_DELETE_RULES, list(rule_ids))
        return await self._execute(q.Q_RULE_STATES_DELETE_RULES, list(rule_ids))

    async def add_silence(self, silence: Silence) -> None:
        await self._execute(q.Q_SILENCE_INSERT, *rows_.silence_row(silence))

    async def get_silence(self, silence_id: str) -> Silence | None:
        found = await self._fetch(q.Q_SILENCE_GET, silence_id)
        return rows_.silence(found[0]) if found else None

    async def list_silences(self, *, active_after: datetime | None = None) -> list[Silence]:
        return [rows_.silence(r) for r in await self._fetch(q.Q_SILENCES_LIST, active_after)]

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        return await self._execute(q.Q_SILENCE_EXPIRE, rows_.aware(now), silence_id) > 0

    # -- digests ---------------------------------------------------------------------------------

    async def held_groups(self) -> list[HeldGroup]:
        return [
            HeldGroup(channel=r[0], group_key=r[1], first_at=r[2], count=int(r[3]), last_digest_at=r[4])
            for r in await self._fetch(q.Q_HELD_GROUPS)
        ]

    async def list_held(self, channel: str, group_key: str) -> list[Delivery]:
        return [rows_.delivery(r) for r in await self._fetch(q.Q_HELD_OF_GROUP, channel, group_key)]

    async def commit_digest(
        self, event: Event, digest: Delivery, members: Sequence[str], *, fence: Fence | None = None
    ) -> None:
        event_row, digest_row = rows_.event_row(event), rows_.delivery_row(digest)
        async with self._transaction() as conn:
            await check_fence(conn, fence)
            await conn.execute(q.Q_EVENT_INSERT, *event_row)
            await conn.execute(q.Q_DELIVERY_INSERT, *digest_row)
            await conn.executemany(q.Q_MARK_DIGESTED, [(f"sent in digest {digest.id}", m) for m in members])
            await self._notify_outbox(conn)
