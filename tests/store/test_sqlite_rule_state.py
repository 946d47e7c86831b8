"""The SQLite file keeps rule states across a reopen, and an older file is upgraded in place without
losing a delivery (rule-state and silence promises of every store: test_contract.py)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

import pytest

from bridge.store.sqlite import SqliteStore
from bridge.store.sqlite_sql import SCHEMA_VERSION
from tests.store.factories import pending, result


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "bridge.db")
    await s.open()
    yield s
    await s.close()


async def test_rule_states_commit_with_the_poll_result_and_survive_reopening(tmp_path):
    path = tmp_path / "b.db"
    first = SqliteStore(path)
    await first.open()
    await first.commit([replace(result(), rule_states=(pending(),))])
    await first.close()

    second = SqliteStore(path)
    await second.open()
    try:
        [state] = await second.list_rule_states()
    finally:
        await second.close()
    assert state == pending()


V2_DELIVERIES = """
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY, event_id TEXT NOT NULL REFERENCES events (id), channel TEXT NOT NULL,
    body BLOB NOT NULL, status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL, created_at TEXT NOT NULL,
    last_error TEXT
)"""


async def test_a_version_2_file_is_upgraded_in_place_keeping_deliveries_and_attempts(tmp_path):
    path = tmp_path / "old.db"
    # Build a v2 file: today's schema with the v2 deliveries table, one delivery and one attempt.
    s = SqliteStore(path)
    await s.open()
    r = result()
    await s.commit([r])
    await s.close()
    [d] = r.deliveries
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA foreign_keys = OFF")
        db.execute("DROP TABLE deliveries")
        db.execute(V2_DELIVERIES)
        db.execute(
            "INSERT INTO deliveries VALUES (?, ?, ?, ?, 'dead', 8, '2026-11-22T21:00:00.000000Z', "
            "'2026-11-22T21:00:00.000000Z', 'HTTP 500')",
            (d.id, d.event_id, d.channel, d.body),
        )
        db.execute(
            "INSERT INTO attempts (delivery_id, number, at, ok, latency_ms) "
            "VALUES (?, 8, '2026-11-22T21:00:00.000000Z', 0, 1.5)",
            (d.id,),
        )
        db.execute("PRAGMA user_version = 2")
    db.close()

    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        kept = await upgraded.get_delivery(d.id)
        assert kept is not None
        assert (kept.status, kept.body) == ("dead", d.body)
        assert [a.number for a in await upgraded.list_attempts(d.id)] == [8]
        # The new statuses are accepted now.
        suppressed = replace(result("wb-2"), deliveries=tuple(
            replace(x, status="suppressed") for x in result("wb-2").deliveries
        ))  # fmt: skip
        await upgraded.commit([suppressed])
    finally:
        await upgraded.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    db.close()


async def test_a_v7_store_gains_the_acknowledgement_columns_and_keeps_its_rule_states(tmp_path):
    path = tmp_path / "v7.db"
    s = SqliteStore(path)
    await s.open()
    await s.commit([replace(result(), rule_states=(pending(),))])
    await s.close()
    with sqlite3.connect(path) as db:  # back to the v7 shape: rule_states without the #14 columns
        for column in (
            "firing_seq",
            "escalated",
            "escalate_at",
            "acked_by",
            "acked_at",
            "snoozed_until",
            "snoozed_by",
        ):
            db.execute(f"ALTER TABLE rule_states DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 7")
    db.close()

    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        [kept] = await upgraded.list_rule_states()
        assert kept == pending()
        acked = replace(pending(), phase="firing", firing_seq=1, acked_by="ada", acked_at=pending().since)
        await upgraded.save_rule_states([acked])
        assert await upgraded.list_rule_states() == [acked]
    finally:
        await upgraded.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()
