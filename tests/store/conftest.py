"""The `store` fixture of the contract suite: every backend behind the Store protocol, one test each.

PostgreSQL runs against the server named by WATTBRIDGE_TEST_PG (set by `.ci/run`), each test in a
schema of its own that is dropped afterwards; without the variable those cases skip and say why.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bridge.store.base import Store
from bridge.store.postgres import PostgresStore
from bridge.store.sqlite import SqliteStore

PG_URL = os.environ.get("WATTBRIDGE_TEST_PG")
NO_PG = "WATTBRIDGE_TEST_PG is unset (e.g. postgresql://postgres@127.0.0.1:5432/test): PostgreSQL skipped"


@contextlib.asynccontextmanager
async def pg_schema() -> AsyncIterator[tuple[str, str]]:
    """(url, schema): a fresh, empty schema on the test server, dropped after the test."""
    if not PG_URL:
        pytest.skip(NO_PG)
    schema = f"wb_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_URL)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        yield PG_URL, schema
    finally:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Store]:
    async with contextlib.AsyncExitStack() as stack:
        s: Store
        if request.param == "sqlite":
            s = SqliteStore(tmp_path / "bridge.db")
        else:
            url, schema = await stack.enter_async_context(pg_schema())
            s = PostgresStore(url, schema=schema, pool_size=4)
        await s.open()
        stack.push_async_callback(s.close)
        yield s
