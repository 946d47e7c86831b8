"""Which store a `[store] url` names, and whether it can be reached: the one place that knows the
backends by name (the rest of the bridge sees only the Store protocol)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Literal

from bridge.errors import StoreError
from bridge.store.base import Store

SQLITE_PREFIX = "sqlite:///"
POSTGRES_PREFIXES = ("postgresql://", "postgres://")
SUPPORTED = "sqlite:///PATH or postgresql://USER@HOST:PORT/DATABASE"


def unsupported_reason(url: str) -> str | None:
    """Why `url` names no store this bridge has (None when it names one)."""
    if url.startswith(SQLITE_PREFIX):
        return None if url.removeprefix(SQLITE_PREFIX) else f"no file path after {SQLITE_PREFIX!r}"
    if url.startswith(POSTGRES_PREFIXES):
        return None
    scheme = url.split(":", 1)[0] if ":" in url else url
    return f"unsupported store {scheme!r} (supported: {SUPPORTED})"


def store_for_url(
    url: str, *, synchronous: Literal["FULL", "NORMAL"] = "FULL", group_commit_window: timedelta | None = None
) -> Store:
    """The store `url` names, not yet opened; StoreError when it names none. `synchronous` and
    `group_commit_window` are SQLite's (PostgreSQL's server flushes concurrent commits together)."""
    reason = unsupported_reason(url)
    if reason is not None:
        raise StoreError(f"store.url: {reason}")
    if url.startswith(POSTGRES_PREFIXES):
        from bridge.store.postgres import PostgresStore

        return PostgresStore(url)
    from bridge.store.sqlite import SqliteStore

    window = None if group_commit_window is None else group_commit_window.total_seconds()
    return SqliteStore(Path(url.removeprefix(SQLITE_PREFIX)), synchronous=synchronous, group_window_s=window)


async def probe(url: str) -> None:
    """Raise StoreError when `run` could not open this store: for PostgreSQL a real connection (and
    schema check), for SQLite a writable directory (checking must not create the file)."""
    reason = unsupported_reason(url)
    if reason is not None:
        raise StoreError(f"store.url: {reason}")
    if url.startswith(SQLITE_PREFIX):
        folder = Path(url.removeprefix(SQLITE_PREFIX)).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise StoreError(
                f"store.url: cannot create the SQLite store in {str(folder)!r}: no such writable folder"
            )
        return
    from bridge.store.postgres import PostgresStore

    store = PostgresStore(url, pool_size=1)
    await store.open()
    await store.close()
