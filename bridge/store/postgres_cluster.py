"""What replicas on one PostgreSQL database share beyond the rows: leases (poll groups, timers),
fenced writes, and the outbox wake-up (LISTEN/NOTIFY). A mixin of `PostgresStore`, with the SQL.

Fencing: a write made on the strength of a lease (the timer tick's commits) first reads the lease
row `FOR SHARE` in its own transaction; a lease another replica took since has another holder or a
greater token, and the write is refused (`FencedOut`). The share lock makes a takeover wait for the
write's commit, so nothing can slip in between the check and the write.

Wake-up: a transaction that leaves due deliveries in the outbox also does `pg_notify` (delivered at
its commit, never for a rollback). Every replica's listener (one dedicated connection, reconnected
when lost) wakes its idle delivery worker. A notification names the schema and the store instance
that sent it: other schemas on the database are not ours, and our own commits were told in memory.
Polling the outbox stays the fallback: a notification lost with a connection costs one poll period.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from bridge.errors import FencedOut
from bridge.lifecycle import LoopFn
from bridge.store import postgres_rows as rows_
from bridge.store import postgres_sql as q
from bridge.store.base import Fence

log = structlog.get_logger(__name__)

OUTBOX_CHANNEL = "wattbridge_outbox"
LISTEN_RETRY_MAX_S = 30.0
LISTEN_KEEPALIVE_S = 30.0  # a dead peer that sent no FIN is found by this ping, then reconnected

# FOR SHARE: a takeover (an UPDATE of this row) waits until the fenced write has committed.
Q_FENCE = "SELECT token FROM leases WHERE name = $1 AND holder = $2 FOR SHARE"
Q_NOTIFY = "SELECT pg_notify($1, $2)"


async def check_fence(conn: Any, fence: Fence | None) -> None:
    """Raise FencedOut unless `fence`'s holder still holds its lease with its token."""
    if fence is None:
        return
    token = await conn.fetchval(Q_FENCE, fence.name, fence.holder)
    if token is None or int(token) != fence.token:
        raise FencedOut(fence.name, fence.token)


class PostgresCluster:
    """Mixed into PostgresStore, which provides `_fetch`, `_execute`, `_transaction` and `url`."""

    url: str
    _schema_name: str = "public"  # the schema in use (read at open): notifications are per database
    _sender: str = ""  # this store instance, so its own notifications are ignored
    listener: OutboxListener | None = None  # the last one `outbox_listener` made (for /readyz, tests)

    async def _fetch(self, query: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _execute(self, query: str, *args: Any) -> int:
        raise NotImplementedError

    def _transaction(self) -> contextlib.AbstractAsyncContextManager[Any]:
        raise NotImplementedError

    async def _notify_outbox(self, conn: Any) -> None:
        """Inside a transaction that leaves due deliveries: wake the other replicas at its commit."""
        if not self._sender:
            self._sender = uuid.uuid4().hex
        await conn.execute(Q_NOTIFY, OUTBOX_CHANNEL, f"{self._schema_name}|{self._sender}")

    def outbox_listener(self, wake: Callable[[], None]) -> LoopFn | None:
        if not self._sender:
            self._sender = uuid.uuid4().hex
        self.listener = OutboxListener(self.url, f"{self._schema_name}|", self._sender, wake)
        return self.listener.run

    # -- leases ----------------------------------------------------------------------------------

    async def acquire_lease(self, name: str, holder: str, now: datetime, period: timedelta) -> int | None:
        at = rows_.aware(now)
        async with self._transaction() as conn:
            token = await conn.fetchval(q.Q_LEASE_ACQUIRE, name, holder, at, at + period)
        return None if token is None else int(token)

    async def renew_leases(self, holder: str, now: datetime, period: timedelta) -> int:
        at = rows_.aware(now)
        return await self._execute(q.Q_LEASE_RENEW, holder, at, at + period)

    async def release_leases(self, holder: str, names: Sequence[str]) -> None:
        if names:
            await self._execute(q.Q_LEASE_RELEASE, holder, list(names))

    async def held_leases(self, holder: str, now: datetime) -> list[str]:
        return [r[0] for r in await self._fetch(q.Q_LEASES_HELD, holder, rows_.aware(now))]

    async def lease_holders(self, prefix: str, now: datetime) -> list[tuple[str, str, datetime]]:
        return [(r[0], r[1], r[2]) for r in await self._fetch(q.Q_LEASE_HOLDERS, prefix, rows_.aware(now))]


class OutboxListener:
    """One dedicated connection LISTENing on the outbox channel; reconnects (with back-off) when
    it is lost, and wakes the worker once after each (re)connect for what it may have missed."""

    def __init__(self, url: str, schema: str, sender: str, wake: Callable[[], None]) -> None:
        self._url = url
        self._prefix = schema  # "SCHEMA|": notifications of other schemas are not ours
        self._sender = sender
        self._wake = wake
        self.connects = 0
        self.listening = asyncio.Event()  # set while LISTEN is active on a live connection
        self.server_pid: int | None = None  # that connection's backend (ops: pg_stat_activity)

    def _on_notify(self, conn: object, pid: int, channel: str, payload: str) -> None:
        schema, _, sender = payload.partition("|")
        if f"{schema}|" == self._prefix and sender != self._sender:
            self._wake()

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self._url, timeout=10)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                failures += 1
                delay = min(LISTEN_RETRY_MAX_S, 2.0 ** (failures - 1))
                log.warning("outbox.listen_failed", error=str(exc), retry_in_s=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                continue
            try:
                failures = 0
                await self._listen(conn, stop)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
                log.warning("outbox.listen_lost", error=str(exc))
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    await conn.close(timeout=5)

    async def _listen(self, conn: Any, stop: asyncio.Event) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(OUTBOX_CHANNEL, self._on_notify)
        self.server_pid = conn.get_server_pid()
        self.listening.set()
        self.connects += 1
        log.info("outbox.listening", reconnect=self.connects > 1)
        if self.connects > 1:
            self._wake()  # notifications sent while we were away are gone: look once
        while not stop.is_set() and not lost.is_set():
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
            try:
                await asyncio.wait(waiters, timeout=LISTEN_KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            if not stop.is_set() and not lost.is_set():
                await conn.fetchval("SELECT 1", timeout=10)
        if lost.is_set() and not stop.is_set():
            log.warning("outbox.listen_lost", error="the connection was closed")
