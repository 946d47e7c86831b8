"""What only the SQLite store promises: its file survives a reopen, an older file is upgraded in
place, an unopenable path is a named error, and the status page's query is an index seek.
(The protocol's promises are in test_contract.py, run on every backend.)"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.errors import CommitConflict, StoreError
from bridge.store.sqlite import SqliteStore
from bridge.store.sqlite_api_sql import Q_LAST_FIRINGS
from bridge.store.sqlite_sql import SCHEMA_VERSION
from tests.store.factories import T0, key, result


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "bridge.db")
    await s.open()
    yield s
    await s.close()


async def test_last_firings_are_each_rules_newest_firing_found_by_an_index_seek(store, tmp_path):
    later = result("wb-2", sequence=2, at=T0 + timedelta(hours=1))
    resolved = result("wb-3", sequence=3, at=T0 + timedelta(hours=2))
    resolved = replace(resolved, events=(replace(resolved.events[0], status="resolved"),))
    await store.commit([result("wb-1", at=T0), later, resolved])

    fired = await store.last_firings(["charging-started", "never-fired"])

    # A resolved event is not a firing; a rule that never fired is left out.
    assert fired == {"charging-started": T0 + timedelta(hours=1)}
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        plan = db.execute(f"EXPLAIN QUERY PLAN {Q_LAST_FIRINGS}", ('["charging-started"]',)).fetchall()
    db.close()
    assert any("USING INDEX events_firing_by_rule (rule_id=?)" in step[3] for step in plan)


async def test_a_v4_store_gains_the_last_firing_index_when_opened(tmp_path):
    path = tmp_path / "v4.db"
    s = SqliteStore(path)
    await s.open()
    await s.commit([result("wb-1", at=T0)])
    await s.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX events_firing_by_rule")
        db.execute("PRAGMA user_version = 4")
    db.close()

    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        assert await upgraded.last_firings(["charging-started"]) == {"charging-started": T0}
    finally:
        await upgraded.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_firing_by_rule'").fetchone()
    db.close()


async def test_a_v5_store_gains_snapshot_versions_and_the_transition_key_when_opened(tmp_path):
    path = tmp_path / "v5.db"
    s = SqliteStore(path)
    await s.open()
    await s.commit([result("wb-1", at=T0)])
    await s.close()
    with sqlite3.connect(path) as db:  # back to the v5 shape: no version column, no unique key
        db.execute("DROP INDEX events_transition")
        db.execute("ALTER TABLE snapshots DROP COLUMN version")
        db.execute("PRAGMA user_version = 5")
    db.close()

    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        before = await upgraded.get_snapshot(key("wb-1"))
        assert before is not None
        assert before.version == 0
        await upgraded.commit([result("wb-1", sequence=2, version=1)])  # the next write lands
        with pytest.raises(CommitConflict):
            await upgraded.commit([result("wb-1", sequence=2, version=1, at=T0 + timedelta(seconds=1))])
    finally:
        await upgraded.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 10
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_transition'").fetchone()
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'flap_states'").fetchone()
    db.close()


async def test_a_v7_store_gains_delivery_claim_tokens_when_opened(tmp_path):
    path = tmp_path / "v7.db"
    s = SqliteStore(path)
    await s.open()
    await s.commit([result("wb-1", at=T0)])
    await s.close()
    with sqlite3.connect(path) as db:  # back to the v7 shape: deliveries without claim tokens
        db.execute("ALTER TABLE deliveries DROP COLUMN claim_token")
        db.execute("PRAGMA user_version = 7")
    db.close()

    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        [claimed] = await upgraded.claim_due(T0, limit=10, lease=timedelta(seconds=60))
        assert claimed.claim_token == 1  # the stored delivery starts at 0; its first claim is 1
    finally:
        await upgraded.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


async def test_reopening_the_file_finds_everything_committed(tmp_path):
    path = tmp_path / "durable.db"
    first = SqliteStore(path)
    await first.open()
    r = result()
    await first.commit([r])
    await first.close()

    second = SqliteStore(str(path), synchronous="NORMAL")
    await second.open()
    try:
        assert await second.get_snapshot(key()) == r.snapshot
        assert await second.get_event(r.events[0].id) == r.events[0]
        assert await second.get_delivery(r.deliveries[0].id) == r.deliveries[0]
        await second.ping()
    finally:
        await second.close()


async def test_an_unopenable_path_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore(tmp_path / "missing-dir" / "x.db").open()


async def test_a_v5_store_gains_the_traces_table_when_opened(tmp_path):
    path = tmp_path / "v5.db"
    s = SqliteStore(path)
    await s.open()
    await s.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE traces")
        db.execute("DROP INDEX deliveries_by_event")
        db.execute("PRAGMA user_version = 5")
    db.close()

    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        assert await upgraded.list_traces("charging-started", "wb-1") == []
        assert (await upgraded.counts()).traces == 0
    finally:
        await upgraded.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'deliveries_by_event'").fetchone()
    db.close()
