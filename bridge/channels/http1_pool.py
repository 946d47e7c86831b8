"""The idle keep-alive connections of one origin, shared by the two lean HTTP/1.1 clients (the
webhook `Poster` in `http1.py` and the provider GET `Origin` in `bridge/providers/http1.py`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, Protocol, TypeVar

KEEPALIVE_S = 15.0  # as aiohttp's connector: an idle connection older than this is closed
MAX_IDLE = 100  # idle connections kept per origin (aiohttp's connector limit)


class Pooled(Protocol):
    open: bool
    idle_since: float

    def close(self) -> None: ...

    def abort(self) -> None: ...

    @property
    def stale(self) -> type[Exception]:
        """Raised when a reused connection closed before any byte of the answer."""
        ...


C = TypeVar("C", bound=Pooled)
A = TypeVar("A")


class IdlePool(Generic[C]):
    """Most recently used first: LIFO keeps few connections warm and lets the rest time out."""

    def __init__(self) -> None:
        self._idle: list[C] = []
        self._closed = False

    def take(self) -> C | None:
        """The most recently used idle connection still open and fresh, or None."""
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if conn.open and now - conn.idle_since < KEEPALIVE_S:
                return conn
            conn.close()
        return None

    async def exchange(
        self, request: Callable[[C], Awaitable[tuple[A, bool]]], connect: Callable[[], Awaitable[C]]
    ) -> A:
        """`request` on the most recent idle connection, else on a new one from `connect`. A kept-alive
        connection the server closed while idle (`stale`) is retried once on a new one, as aiohttp
        retries; the answer's connection is kept or closed as it allows, a failed one aborted."""
        conn = self.take()
        if conn is not None:
            try:
                return await self._on(conn, request)
            except conn.stale:
                pass
        return await self._on(await connect(), request)

    async def _on(self, conn: C, request: Callable[[C], Awaitable[tuple[A, bool]]]) -> A:
        try:
            answer, keep = await request(conn)
        except BaseException:
            conn.abort()
            raise
        self.give_back(conn, keep=keep)
        return answer

    def give_back(self, conn: C, *, keep: bool) -> None:
        """After an exchange: kept for the next request when it may be reused, else closed."""
        if keep and not self._closed and len(self._idle) < MAX_IDLE:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
