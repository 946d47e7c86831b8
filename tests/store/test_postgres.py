"""PostgreSQL-only promises: the schema migrates in versions, once, whoever opens it first."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from bridge.errors import CommitConflict
from bridge.store import postgres_sql as q
from bridge.store.postgres import PostgresStore
from tests.store.conftest import pg_schema
from tests.store.factories import T0, key, result


async def test_a_version_1_database_gains_snapshot_versions_and_the_transition_key(tmp_path):
    async with pg_schema() as (url, schema):
        conn = await asyncpg.connect(url, server_settings={"search_path": schema})
        try:  # the database as the first PostgreSQL release left it, with one row in it
            await conn.execute(q.Q_VERSION_TABLE)
            await conn.execute(q.MIGRATIONS[0][1])
            await conn.execute(q.Q_VERSION_SET, 1)
            await conn.execute(
                "INSERT INTO snapshots VALUES ('podero', 'podero.wallbox', 'wb-1', NULL, 'd1', 1, $1)", T0
            )
        finally:
            await conn.close()

        store = PostgresStore(url, schema=schema, pool_size=2)
        await store.open()
        try:
            before = await store.get_snapshot(key())
            assert before is not None
            assert before.version == 0
            await store.commit([result(sequence=2, version=1)])
            with pytest.raises(CommitConflict):
                await store.commit([result(sequence=2, version=1, at=T0.replace(second=5))])
        finally:
            await store.close()
        conn = await asyncpg.connect(url, server_settings={"search_path": schema})
        try:
            assert await conn.fetchval(q.Q_VERSION_GET) == q.SCHEMA_VERSION == 7
            assert await conn.fetchval("SELECT count(*) FROM wattbridge_schema") == 7
            assert await conn.fetchval("SELECT count(*) FROM flap_states") == 0
        finally:
            await conn.close()


async def test_replicas_opening_an_empty_database_together_migrate_it_once(tmp_path):
    async with pg_schema() as (url, schema):
        stores = [PostgresStore(url, schema=schema, pool_size=1) for _ in range(3)]
        await asyncio.gather(*(s.open() for s in stores))
        try:
            await stores[0].commit([result()])
            assert await stores[2].get_snapshot(key()) is not None
        finally:
            for s in stores:
                await s.close()
        conn = await asyncpg.connect(url, server_settings={"search_path": schema})
        try:
            versions = [r[0] for r in await conn.fetch("SELECT version FROM wattbridge_schema ORDER BY 1")]
            assert versions == [1, 2, 3, 4, 5, 6, 7]
        finally:
            await conn.close()


async def test_a_version_6_database_keeps_its_states_and_then_tells_what_changed(tmp_path):
    async with pg_schema() as (url, schema):
        conn = await asyncpg.connect(url, server_settings={"search_path": schema})
        try:  # the database as release 6 left it: a running hold and a flapping resource
            await conn.execute(q.Q_VERSION_TABLE)
            for number, statements in q.MIGRATIONS[:6]:
                await conn.execute(statements)
                await conn.execute(q.Q_VERSION_SET, number)
            await conn.execute(
                "INSERT INTO rule_states (rule_id, provider, source, resource_id, phase, since, due_at,"
                " changes) VALUES ('action-needed', 'podero', 'podero.wallbox', 'wb-1', 'pending', $1,"
                " $2, '[]')",
                T0,
                T0 + timedelta(minutes=2),
            )
            await conn.execute(
                "INSERT INTO flap_states (rule_id, provider, source, resource_id, flips, since, count)"
                " VALUES ('wallbox-connection', 'podero', 'podero.wallbox', 'wb-1', '[]', $1, 6)",
                T0,
            )
        finally:
            await conn.close()

        store = PostgresStore(url, schema=schema, pool_size=2)
        await store.open()
        try:
            first = await store.state_changes(None)
            assert [st.phase for st in first.rule_states] == ["pending"]
            assert [f.count for f in first.flap_states] == [6]
            [held] = first.rule_states
            await store.save_rule_states([replace(held, phase="idle", due_at=None)])  # deleted
            after = await store.state_changes(first.watermark)
        finally:
            await store.close()
        assert not after.full
        assert after.rules_gone == (("action-needed", key()),)
        assert after.flap_states == ()
