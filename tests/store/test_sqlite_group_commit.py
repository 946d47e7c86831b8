"""How the SQLite store merges commits (sqlite_group_commit.py): callers queued while a transaction
holds the connection share the next one, each under its own savepoint; a lone commit goes at once,
one soon after the last waits out the window of the injected clock; a caller cancelled while queued
is left out; what is queued is written before the store closes.

Overlap is built deterministically by holding the store's connection lock, as a transaction in
flight does; the window runs on a ManualClock. No sleeps, no timing."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bridge.clock import ManualClock
from bridge.errors import CommitConflict, FencedOut, StoreError
from bridge.store.base import Fence
from bridge.store.sqlite import SqliteStore
from bridge.store.sqlite_group_commit import commit_group
from tests.store.factories import key, result
from tests.store.test_concurrent_commits import orphan


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "bridge.db", group_window_s=0)  # merging by overlap alone
    await s.open()
    yield s
    await s.close()


async def queued(store: SqliteStore, *calls: object) -> list[asyncio.Task[None]]:
    """Start each commit while the connection is busy, so all of them queue for the next transaction."""
    tasks = [asyncio.create_task(c) for c in calls]  # type: ignore[arg-type]
    for _ in range(3):
        await asyncio.sleep(0)  # each has queued and the writer waits for the lock
    return tasks


def on_disk(path, resource_id: str) -> bool:  # type: ignore[no-untyped-def]
    """Read by another connection: what a crash right now would leave."""
    with sqlite3.connect(path) as db:
        row = db.execute("SELECT 1 FROM snapshots WHERE resource_id = ?", (resource_id,)).fetchone()
    db.close()
    return row is not None


async def test_callers_queued_behind_a_busy_connection_share_one_transaction_all_durable(store):
    async with store._lock:  # a transaction in flight
        tasks = await queued(store, *(store.commit([result(f"wb-{i}")]) for i in range(5)))
        assert not any(t.done() for t in tasks)  # nobody returns before its COMMIT
    before = store._group.transactions

    await asyncio.gather(*tasks)

    assert store._group.transactions == before + 1
    assert all(on_disk(store.path, f"wb-{i}") for i in range(5))


async def test_a_refused_caller_in_a_shared_transaction_fails_alone_with_its_own_error(store):
    stale = Fence("timers", "replica-a", 1)  # no such lease held: refused
    await store.commit([result("wb-0", sequence=1)])
    async with store._lock:
        tasks = await queued(
            store,
            store.commit([result("wb-1")]),
            store.commit([result("wb-ok"), orphan("wb-bad")]),  # a foreign key refused
            store.commit([result("wb-2")], fence=stale),
            store.commit([result("wb-0", sequence=1)]),  # version 1 is there already
            store.commit([result("wb-3")]),
        )
    before = store._group.transactions

    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert store._group.transactions == before + 1
    assert outcomes[0] is None
    assert isinstance(outcomes[1], StoreError)
    assert "FOREIGN KEY" in str(outcomes[1])
    assert isinstance(outcomes[2], FencedOut)
    assert isinstance(outcomes[3], CommitConflict)
    assert outcomes[4] is None
    assert [on_disk(store.path, r) for r in ("wb-1", "wb-ok", "wb-bad", "wb-2", "wb-3")] == [
        True, False, False, False, True,
    ]  # fmt: skip


async def test_a_caller_cancelled_while_queued_is_left_out_and_the_others_commit(store):
    async with store._lock:
        tasks = await queued(store, *(store.commit([result(f"wb-{i}")]) for i in range(3)))
        tasks[1].cancel()

    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert outcomes[0] is None
    assert isinstance(outcomes[1], asyncio.CancelledError)
    assert outcomes[2] is None
    assert [on_disk(store.path, f"wb-{i}") for i in range(3)] == [True, False, True]
    assert {e.id for e in await store.list_events()} == {result(f"wb-{i}").events[0].id for i in (0, 2)}


async def test_a_caller_cancelled_after_its_transaction_began_does_not_disturb_the_others(store):
    async with store._lock:
        tasks = await queued(store, *(store.commit([result(f"wb-{i}")]) for i in range(3)))
    await asyncio.sleep(0)  # the writer has the lock now and its transaction is on SQLite's thread
    tasks[1].cancel()

    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert outcomes[0] is None
    assert outcomes[2] is None
    assert on_disk(store.path, "wb-0")
    assert on_disk(store.path, "wb-2")
    # Begun is begun: its rows are written whole (it went in the shared transaction).
    assert on_disk(store.path, "wb-1")
    assert {d.id for d in await store.list_deliveries()} >= {d.id for d in result("wb-1").deliveries}


async def test_one_callers_queued_commits_land_in_the_order_it_made_them(store):
    async with store._lock:
        tasks = await queued(
            store, *(store.commit([result("wb-1", sequence=s, state={"n": s})]) for s in (1, 2, 3))
        )

    await asyncio.gather(*tasks)

    stored = await store.get_snapshot(key("wb-1"))
    assert stored is not None
    assert stored.sequence == 3  # each version followed the one before, in one transaction
    assert stored.state == {"n": 3}


async def test_a_lone_commit_goes_at_once_and_the_next_within_the_window_takes_its_followers(tmp_path):
    clock = ManualClock()
    store = SqliteStore(tmp_path / "bridge.db", group_window_s=0.002, clock=clock)
    await store.open()
    try:
        await store.commit([result("wb-0")])  # lone: the clock never moved, yet it went
        first = store._group.transactions

        soon = await queued(store, store.commit([result("wb-1")]))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not soon[0].done()  # within the window: waiting for more
        more = await queued(store, store.commit([result("wb-2")]), store.commit([result("wb-3")]))
        clock.advance(timedelta(milliseconds=2))
        await asyncio.gather(*soon, *more)

        assert store._group.transactions == first + 1
        assert store._group.callers == 4
        assert all(on_disk(store.path, f"wb-{i}") for i in range(4))

        clock.advance(timedelta(milliseconds=2))  # the window has passed: at once again
        await store.commit([result("wb-4")])
        assert store._group.transactions == first + 2
    finally:
        await store.close()


async def test_a_commit_waiting_out_the_window_is_written_before_the_store_closes(tmp_path):
    clock = ManualClock()
    store = SqliteStore(tmp_path / "bridge.db", group_window_s=0.002, clock=clock)
    await store.open()
    await store.commit([result("wb-0")])
    waiting = await queued(store, store.commit([result("wb-1")]))
    closing = asyncio.create_task(store.close())
    await asyncio.sleep(0)
    assert not closing.done()  # it waits for the queued caller

    clock.advance(timedelta(milliseconds=2))
    await closing

    assert waiting[0].result() is None
    assert on_disk(store.path, "wb-1")


async def test_normal_synchronous_merges_by_overlap_only(tmp_path):
    store = SqliteStore(tmp_path / "bridge.db", synchronous="NORMAL", clock=ManualClock())
    await store.open()
    try:
        for i in range(3):  # the clock never moves: with a window these would wait forever
            await store.commit([result(f"wb-{i}")])
        assert store._group.transactions == 3
    finally:
        await store.close()


def test_a_shared_transaction_refused_at_commit_retries_each_caller_alone(tmp_path):
    """A failure that only COMMIT sees (here a deferred foreign key) loses every caller's savepoint:
    each is written again in a transaction of its own, so the good ones land and the bad one fails."""
    conn = sqlite3.connect(tmp_path / "t.db", isolation_level=None)
    conn.executescript(
        """
        PRAGMA foreign_keys = ON;
        CREATE TABLE parent (id TEXT PRIMARY KEY);
        CREATE TABLE child (id TEXT PRIMARY KEY,
                            parent TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
        INSERT INTO parent VALUES ('p');
        """
    )
    insert = "INSERT INTO child VALUES (?, ?)"

    def entry(child: str, parent: str):  # type: ignore[no-untyped-def]
        return ([("", []), ("", []), (insert, [(child, parent)])], None)

    outcomes = commit_group(conn, [entry("a", "p"), entry("b", "missing"), entry("c", "p")])

    assert outcomes[0] is None
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert outcomes[2] is None
    assert [r[0] for r in conn.execute("SELECT id FROM child ORDER BY id")] == ["a", "c"]
    conn.close()
