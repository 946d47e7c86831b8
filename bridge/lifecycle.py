"""One pattern for every background loop: a named task, a stop Event, a bounded drain, then cancel.

A loop that crashes asks the process to stop with exit code 2 (serve.py watches `crashed`), so a
broken component never leaves a zombie bridge that looks alive but delivers nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

import structlog

log = structlog.get_logger(__name__)

LoopFn = Callable[[asyncio.Event], Coroutine[Any, Any, None]]
T = TypeVar("T")


async def finish_before_cancel(work: Coroutine[Any, Any, T]) -> T:
    """Run `work` to its end even when the caller is cancelled meanwhile; the cancellation then
    goes on (for a store commit that must not be cut in half by a shutdown)."""
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):  # its own failure is not the point any more
            await task
        raise


class Service:
    """Runs `fn(stop_event)` as an owned task for the span of an `async with` block."""

    def __init__(
        self,
        fn: LoopFn,
        *,
        name: str,
        drain: float = 10.0,
        on_crash: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        self._fn = fn
        self.name = name
        self._drain = drain
        self._on_crash = on_crash
        self.stop_event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Service:
        self._task = asyncio.create_task(self._fn(self.stop_event), name=self.name)
        self._task.add_done_callback(self._done)
        return self

    def _done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self.stop_event.is_set():
            return
        exc = task.exception()
        if exc is None:
            exc = RuntimeError(f"service {self.name!r} stopped unexpectedly")
        log.error("service.crashed", service=self.name, error=repr(exc))
        if self._on_crash is not None:
            self._on_crash(self.name, exc)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_event.set()
        task = self._task
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=self._drain)
        if not done:
            log.warning("service.drain_timeout", service=self.name, seconds=self._drain)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            return
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]  # re-raise the loop's real failure
