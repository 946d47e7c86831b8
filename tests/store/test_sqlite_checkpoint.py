"""How the SQLite store checkpoints its WAL (sqlite_checkpoint.py): never inside a commit, but on a
connection and a thread of its own, at once after the first write and then at most once per interval
of the injected clock while writes go on; an idle store starts none; closing checkpoints the rest.

"In the database file" is read from a copy of the file alone, without its WAL: what a checkpoint
has copied there. Committed rows not yet checkpointed are still durable (the WAL holds them), which
`on_disk` (a second connection, WAL included) shows."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from bridge.clock import ManualClock
from bridge.model import ResourceKey, Watch
from bridge.store.sqlite import SqliteStore
from bridge.store.sqlite_checkpoint import CHECKPOINT_INTERVAL_S
from tests.store.factories import T0, result
from tests.store.test_sqlite_group_commit import on_disk

INTERVAL = timedelta(seconds=CHECKPOINT_INTERVAL_S)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path, clock) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "bridge.db", clock=clock, group_window_s=0)  # commits wait for no clock
    await s.open()
    yield s
    await s.close()


def in_database_file(path, resource_id: str, tmp_path) -> bool:  # type: ignore[no-untyped-def]
    """Whether the row is in the database file itself (a checkpoint copied it out of the WAL)."""
    alone = tmp_path / "file-alone.db"
    shutil.copyfile(path, alone)  # no -wal beside the copy: only what was checkpointed
    with sqlite3.connect(alone) as db:
        row = db.execute("SELECT 1 FROM snapshots WHERE resource_id = ?", (resource_id,)).fetchone()
    db.close()
    alone.unlink()
    return row is not None


async def test_a_commit_never_checkpoints_itself(store):
    async with store._read() as db:
        rows = list(await db.execute_fetchall("PRAGMA wal_autocheckpoint"))
    assert rows[0][0] == 0


async def test_the_first_write_is_checkpointed_at_once_and_later_ones_within_the_interval(
    store, clock, tmp_path
):
    await store.commit([result("wb-1")])
    await store._checkpoints.settled()
    assert in_database_file(store.path, "wb-1", tmp_path)

    clock.advance(INTERVAL / 2)
    await store.commit([result("wb-2")])  # half an interval after the last checkpoint: it waits
    assert on_disk(store.path, "wb-2")  # committed (in the WAL)
    assert not in_database_file(store.path, "wb-2", tmp_path)
    assert store._checkpoints.checkpoints == 1

    clock.advance(INTERVAL / 2)
    await store._checkpoints.settled()
    assert in_database_file(store.path, "wb-2", tmp_path)
    assert store._checkpoints.checkpoints == 2


async def test_writes_during_a_wait_share_the_next_checkpoint(store, clock):
    await store.commit([result("wb-1")])
    await store._checkpoints.settled()
    assert store._checkpoints.checkpoints == 1
    for i in range(2, 6):
        await store.commit([result(f"wb-{i}")])
    clock.advance(INTERVAL)
    await store._checkpoints.settled()
    assert store._checkpoints.checkpoints == 2


async def test_an_idle_store_starts_no_checkpoint(store, clock):
    await store.commit([result("wb-1")])
    await store._checkpoints.settled()
    clock.advance(INTERVAL * 10)
    await store._checkpoints.settled()
    assert store._checkpoints._task is None
    assert store._checkpoints.checkpoints == 1


async def test_every_kind_of_write_is_checkpointed(store, clock, tmp_path):
    # Plain transactions (a watch) and one-hop ones (the outbox's claims) as well as poll commits.
    watch = Watch(key=ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-9"),
                  params={}, created_at=T0)  # fmt: skip
    await store.add_watch(watch)
    await store._checkpoints.settled()
    assert store._checkpoints.checkpoints == 1
    clock.advance(INTERVAL)
    await store.claim_due(T0, limit=10, lease=timedelta(seconds=30))
    await store._checkpoints.settled()
    assert store._checkpoints.checkpoints == 2


async def test_closing_while_a_checkpoint_waits_returns_at_once_and_leaves_everything_in_the_file(
    tmp_path, clock
):
    store = SqliteStore(tmp_path / "bridge.db", clock=clock, group_window_s=0)
    await store.open()
    await store.commit([result("wb-1")])
    await store._checkpoints.settled()
    await store.commit([result("wb-2")])  # its checkpoint waits for the clock, which never moves

    await store.close()

    assert in_database_file(store.path, "wb-2", tmp_path)  # the last connection's close checkpointed
    await store.open()  # and a store opened again checkpoints again
    await store.commit([result("wb-3")])
    clock.advance(INTERVAL)
    await store._checkpoints.settled()
    assert store._checkpoints.checkpoints == 2
    await store.close()
