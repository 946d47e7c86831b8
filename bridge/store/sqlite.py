"""The embedded store: SQLite in WAL mode through aiosqlite, the outbox's durable home.

Its promise is the Store protocol's: each `commit` is atomic (snapshots, events and deliveries
together, idempotent by id; callers committing close together share one transaction, each under
its own savepoint), and `claim_due` leases work without holding a lock across
a send. Datetimes are stored as fixed-width ISO-8601 UTC text (`2026-11-22T21:00:00.000000Z`), so
text order is time order and an operator can read them with the `sqlite3` shell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from bridge.clock import Clock
from bridge.errors import StoreError
from bridge.lifecycle import LoopFn
from bridge.model import (
    FlapState,
    PollResult,
    ResourceKey,
    RuleState,
    Silence,
    Snapshot,
    Trace,
    Watch,
)
from bridge.shards import shard_of
from bridge.store.base import Fence, StateChanges
from bridge.store.sqlite_api import SqliteApiReads
from bridge.store.sqlite_flap_sql import (
    Q_FLAP_DELETE,
    Q_FLAP_UPSERT,
    Q_FLAPS_ALL,
    Q_FLAPS_DELETE_RULE,
    flap_key,
    flap_row,
    flap_state,
)
from bridge.store.sqlite_group_commit import GROUP_WINDOW_S, GroupCommit
from bridge.store.sqlite_lease_sql import (
    Q_LEASE_ACQUIRE,
    Q_LEASE_HOLDERS,
    Q_LEASE_RELEASE,
    Q_LEASE_RENEW,
    Q_LEASES_HELD,
)
from bridge.store.sqlite_outbox import SqliteOutbox
from bridge.store.sqlite_rule_sql import (
    Q_RULE_STATE_DELETE,
    Q_RULE_STATE_UPSERT,
    Q_RULE_STATES_ALL,
    Q_RULE_STATES_DELETE_RULE,
    Q_SILENCE_EXPIRE,
    Q_SILENCE_GET,
    Q_SILENCE_INSERT,
    Q_SILENCES_LIST,
    rule_state,
    rule_state_key,
    rule_state_row,
    silence,
    silence_row,
)
from bridge.store.sqlite_sql import (
    Q_DELIVERY_INSERT,
    Q_DIGESTS_OF_SOURCE,
    Q_EVENT_INSERT,
    Q_SNAPSHOT_GET,
    Q_SNAPSHOT_UPSERT,
    Q_SNAPSHOTS_BY_IDS,
    Q_SNAPSHOTS_OF_SOURCE,
    Q_WATCH_DELETE,
    Q_WATCH_END,
    Q_WATCH_START,
    Q_WATCH_UPSERT,
    Q_WATCHES_LIST,
    Q_WATCHES_PAGE,
    _delivery_row,
    _dt,
    _event_row,
    _json,
    _snapshot,
    _snapshot_row,
    _ts,
    _watch,
)
from bridge.store.sqlite_trace_sql import Q_TRACE_INSERT, trace_row
from bridge.store.sqlite_traces import SqliteTraces


class SqliteStore(SqliteOutbox, SqliteApiReads, SqliteTraces):
    """The Store protocol on one SQLite file (WAL; `synchronous=FULL` survives power loss)."""

    shared = False  # one process: replicas need PostgreSQL

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        group_window_s: float | None = None,
        clock: Clock | None = None,
    ) -> None:
        """`group_window_s`: how long after a commit began the next one waits to take more callers
        with it (default GROUP_WINDOW_S under FULL, where it saves an fsync; none under NORMAL)."""
        super().__init__(path, synchronous=synchronous, clock=clock)
        if group_window_s is None:
            group_window_s = GROUP_WINDOW_S if synchronous == "FULL" else 0.0
        self._group = GroupCommit(self, window_s=group_window_s, clock=self._clock)

    async def close(self) -> None:
        await self._group.drain()  # callers queued for a commit are written before the file closes
        await super().close()

    # -- snapshots -------------------------------------------------------------------------------

    async def get_snapshot(self, key: ResourceKey) -> Snapshot | None:
        async with self._read() as db:
            rows = list(
                await db.execute_fetchall(Q_SNAPSHOT_GET, (key.provider, key.source, key.resource_id))
            )
        return _snapshot(rows[0]) if rows else None

    async def get_snapshots(self, provider: str, source: str) -> dict[str, Snapshot]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_SNAPSHOTS_OF_SOURCE, (provider, source))
        return {snap.key.resource_id: snap for snap in map(_snapshot, rows)}

    async def get_digests(self, provider: str, source: str) -> dict[str, str]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_DIGESTS_OF_SOURCE, (provider, source))
        return dict(rows)  # type: ignore[arg-type]

    async def get_snapshots_by_id(
        self, provider: str, source: str, resource_ids: Sequence[str]
    ) -> dict[str, Snapshot]:
        if not resource_ids:
            return {}
        async with self._read() as db:
            rows = await db.execute_fetchall(
                Q_SNAPSHOTS_BY_IDS, (provider, source, _json(list(resource_ids)))
            )
        return {snap.key.resource_id: snap for snap in map(_snapshot, rows)}

    # -- commit ----------------------------------------------------------------------------------

    async def commit(self, results: Sequence[PollResult], *, fence: Fence | None = None) -> None:
        if not results:
            return
        try:
            # Serialise before taking the write lock: a bad value fails fast and holds nothing.
            snapshots = [_snapshot_row(r.snapshot) for r in results]
            events = [_event_row(e) for r in results for e in r.events]
            deliveries = [_delivery_row(d) for r in results for d in r.deliveries]
            ended = [
                (_ts(r.snapshot.updated_at), r.end_watch, k.provider, k.source, k.resource_id)
                for r in results
                if r.end_watch is not None
                for k in (r.snapshot.key,)
            ]
            started = [
                (w.key.provider, w.key.source, w.key.resource_id, _json(w.params), _ts(w.created_at))
                for r in results
                if (w := r.start_watch) is not None
            ]
            states = [st for r in results for st in r.rule_states]
            forget = [rule_state_key(st) for st in states if st.forgettable]
            keep = [rule_state_row(st) for st in states if not st.forgettable]
            traces = [trace_row(t) for r in results for t in r.traces]
            flaps = [f for r in results for f in r.flaps]
            flaps_kept = [flap_row(f) for f in flaps if not f.forgettable]
            flaps_gone = [flap_key(f) for f in flaps if f.forgettable]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"cannot serialise a poll result: {exc}") from exc
        batches = [
            (Q_SNAPSHOT_UPSERT, snapshots),
            (Q_EVENT_INSERT, events),
            (Q_DELIVERY_INSERT, deliveries),
            (Q_WATCH_END, ended),
            (Q_WATCH_START, started),
            (Q_RULE_STATE_UPSERT, keep),
            (Q_RULE_STATE_DELETE, forget),
            (Q_TRACE_INSERT, traces),
            (Q_FLAP_UPSERT, flaps_kept),
            (Q_FLAP_DELETE, flaps_gone),
        ]
        # The whole transaction runs in ONE hop to aiosqlite's thread (~65 µs per hop measured, and a
        # statement per table would be six more), shared with the callers that commit close
        # together (one fsync for all; each caller's rows all or nothing): sqlite_group_commit.py.
        await self._group.commit(batches, fence)

    # -- watches ---------------------------------------------------------------------------------

    async def add_watch(self, watch: Watch) -> None:
        k = watch.key
        row = (k.provider, k.source, k.resource_id, _json(watch.params), _ts(watch.created_at))
        async with self._transaction() as db:
            await db.execute(Q_WATCH_UPSERT, row)

    async def end_watch(self, key: ResourceKey, *, reason: str, at: datetime) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(Q_WATCH_END, (_ts(at), reason, key.provider, key.source, key.resource_id))
            return cur.rowcount > 0

    async def delete_watch(self, key: ResourceKey) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(Q_WATCH_DELETE, (key.provider, key.source, key.resource_id))
            return cur.rowcount > 0

    async def list_watches(
        self, *, provider: str | None = None, source: str | None = None, active_only: bool = True
    ) -> list[Watch]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_WATCHES_LIST, (provider, source, 1 if active_only else 0))
        return [_watch(row) for row in rows]

    async def list_watches_page(
        self,
        provider: str,
        *,
        source: str | None = None,
        after: tuple[str, str] | None,
        limit: int,
        shard: tuple[int, int] | None = None,
    ) -> list[Watch]:
        # One process never shards its polls (README "Running several replicas"); a shard asked for
        # anyway (the contract suite) is filtered here, page by page, to the same hash as PostgreSQL.
        found: list[Watch] = []
        cursor = after or ("", "")
        while len(found) < limit:
            async with self._read() as db:
                rows = list(await db.execute_fetchall(Q_WATCHES_PAGE, (provider, *cursor, limit, source)))
            page = [_watch(row) for row in rows]
            found += [w for w in page if shard is None or shard_of(w.key.resource_id, shard[1]) == shard[0]]
            if len(rows) < limit:
                break
            cursor = (page[-1].key.source, page[-1].key.resource_id)
        return found[:limit]

    # -- rule states and silences ----------------------------------------------------------------

    async def list_rule_states(self) -> list[RuleState]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_RULE_STATES_ALL)
        return [rule_state(row) for row in rows]

    async def save_rule_states(self, states: Sequence[RuleState]) -> None:
        if not states:
            return
        forget = [rule_state_key(st) for st in states if st.forgettable]
        keep = [rule_state_row(st) for st in states if not st.forgettable]
        async with self._transaction() as db:
            if keep:
                await db.executemany(Q_RULE_STATE_UPSERT, keep)
            if forget:
                await db.executemany(Q_RULE_STATE_DELETE, forget)

    async def record_ack(self, state: RuleState, trace: Trace) -> None:
        row, traced = rule_state_row(state), trace_row(trace)
        async with self._transaction() as db:
            await db.execute(Q_RULE_STATE_UPSERT, row)
            await db.execute(Q_TRACE_INSERT, traced)

    async def delete_rule_states(self, rule_ids: Sequence[str]) -> int:
        async with self._transaction() as db:
            await db.executemany(Q_FLAPS_DELETE_RULE, [(r,) for r in rule_ids])
            cur = await db.executemany(Q_RULE_STATES_DELETE_RULE, [(r,) for r in rule_ids])
            return max(cur.rowcount, 0)

    async def list_flap_states(self) -> list[FlapState]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_FLAPS_ALL)
        return [flap_state(row) for row in rows]

    async def save_flap_states(self, states: Sequence[FlapState]) -> None:
        if not states:
            return
        forget = [flap_key(st) for st in states if st.forgettable]
        keep = [flap_row(st) for st in states if not st.forgettable]
        async with self._transaction() as db:
            if keep:
                await db.executemany(Q_FLAP_UPSERT, keep)
            if forget:
                await db.executemany(Q_FLAP_DELETE, forget)

    async def state_changes(self, since: int | None) -> StateChanges:
        # One process writes this store (`shared` is False), so its poller never asks again after
        # the first load; when asked, every state is a true answer (a delta of everything).
        async with self._read() as db:
            rules = await db.execute_fetchall(Q_RULE_STATES_ALL)
            flaps = await db.execute_fetchall(Q_FLAPS_ALL)
        return StateChanges(
            watermark=0,
            full=True,
            rule_states=tuple(rule_state(row) for row in rules),
            flap_states=tuple(flap_state(row) for row in flaps),
        )

    async def prune_tombstones(self, older_than: timedelta) -> int:
        return 0  # deletions need no tombstones here: `state_changes` always answers in full

    async def add_silence(self, silence: Silence) -> None:
        row = silence_row(silence)
        async with self._transaction() as db:
            await db.execute(Q_SILENCE_INSERT, row)

    async def get_silence(self, silence_id: str) -> Silence | None:
        async with self._read() as db:
            rows = list(await db.execute_fetchall(Q_SILENCE_GET, (silence_id,)))
        return silence(rows[0]) if rows else None

    async def list_silences(self, *, active_after: datetime | None = None) -> list[Silence]:
        after = None if active_after is None else _ts(active_after)
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_SILENCES_LIST, (after,))
        return [silence(row) for row in rows]

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        async with self._transaction() as db:
            cur = await db.execute(Q_SILENCE_EXPIRE, (_ts(now), silence_id))
            return cur.rowcount > 0

    def outbox_listener(self, wake: Callable[[], None]) -> LoopFn | None:
        return None  # one process: its worker is told of new deliveries in memory

    # -- leases (one process: every lease is this one's, unless a test plays two holders) ---------

    async def acquire_lease(self, name: str, holder: str, now: datetime, period: timedelta) -> int | None:
        async with self._transaction() as db:
            rows = list(
                await db.execute_fetchall(Q_LEASE_ACQUIRE, (name, holder, _ts(now), _ts(now + period)))
            )
        return int(rows[0][0]) if rows else None

    async def renew_leases(self, holder: str, now: datetime, period: timedelta) -> int:
        async with self._transaction() as db:
            cur = await db.execute(Q_LEASE_RENEW, (holder, _ts(now), _ts(now + period)))
            return max(cur.rowcount, 0)

    async def release_leases(self, holder: str, names: Sequence[str]) -> None:
        if names:
            async with self._transaction() as db:
                await db.execute(Q_LEASE_RELEASE, (holder, _json(list(names))))

    async def held_leases(self, holder: str, now: datetime) -> list[str]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_LEASES_HELD, (holder, _ts(now)))
        return [str(r[0]) for r in rows]

    async def lease_holders(self, prefix: str, now: datetime) -> list[tuple[str, str, datetime]]:
        async with self._read() as db:
            rows = await db.execute_fetchall(Q_LEASE_HOLDERS, (prefix, _ts(now)))
        return [(str(r[0]), str(r[1]), _dt(str(r[2]))) for r in rows]
