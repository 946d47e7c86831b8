"""The SQLite store keeps what the rule engine must not forget: rule states and silences; and it
upgrades an older file in place without losing a delivery."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.model import Change, RuleState, Silence
from bridge.store.sqlite import SqliteStore
from bridge.store.sqlite_sql import SCHEMA_VERSION
from tests.store.test_sqlite import T0, key, result


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "bridge.db")
    await s.open()
    yield s
    await s.close()


def pending(resource_id: str = "wb-1") -> RuleState:
    return RuleState(
        rule_id="action-needed",
        key=key(resource_id),
        phase="pending",
        since=T0,
        due_at=T0 + timedelta(minutes=2),
        changes=(Change(field="action_needed", old=False, new=True),),
    )


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


async def test_an_idle_state_without_cooldown_memory_is_deleted_and_one_with_it_is_kept(store):
    await store.commit([replace(result("wb-1"), rule_states=(pending("wb-1"), pending("wb-2")))])
    idle = RuleState(rule_id="action-needed", key=key("wb-1"), phase="idle", since=T0)
    cooling = replace(idle, key=key("wb-2"), last_fired_at=T0)
    await store.commit([replace(result("wb-1", sequence=2), rule_states=(idle, cooling))])

    assert await store.list_rule_states() == [cooling]


async def test_silences_are_listed_while_active_and_expire_on_request(store):
    silence = Silence(
        id="sil_1",
        rule="action-*",
        resource="wb-1",
        starts_at=T0,
        ends_at=T0 + timedelta(hours=2),
        comment="maintenance",
        created_by="ops",
        created_at=T0,
    )
    await store.add_silence(silence)

    assert await store.list_silences(active_after=T0 + timedelta(hours=1)) == [silence]
    assert await store.expire_silence("sil_1", T0 + timedelta(hours=1)) is True
    assert await store.expire_silence("sil_1", T0 + timedelta(hours=1, minutes=1)) is False
    assert await store.list_silences(active_after=T0 + timedelta(hours=1)) == []
    expired = await store.get_silence("sil_1")
    assert expired is not None
    assert expired.ends_at == T0 + timedelta(hours=1)


async def test_a_suppressed_delivery_is_kept_and_can_be_replayed(store):
    r = result()
    [d] = r.deliveries
    await store.commit([replace(r, deliveries=(replace(d, status="suppressed"),))])

    assert await store.outbox_depth() == 0
    assert [x.id for x in await store.list_deliveries(status="suppressed")] == [d.id]
    assert await store.replay([d.id], T0) == 1
    assert await store.outbox_depth() == 1


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
