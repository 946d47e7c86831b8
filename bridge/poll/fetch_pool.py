"""Fetch workers: a provider's by-id polls read, checked and digested in other processes.

One event loop carries about one core of polls (bench/README.md "Scale check"); a fleet that needs
more sets `fetch_workers = N` on its provider. Each worker process runs its own copy of the provider
client (own session, own token, 1/N of the rate limit and of the concurrency) and, for each page of
watches the poller hands it, does what an unchanged poll costs: fetch, meaningful digest, compare
with the stored digest. Only what changed (checked against the schema, with its digest) and what
failed comes back. Everything that decides or writes (diff, rules, rule timers, the store, the
outbox, health) stays in the main process, which stays the only writer.

A worker that dies (OOM killer, a bug) breaks the pool: the pages in flight fail the poll like a
provider fault (nothing is written, so nothing is lost: the next poll reads them again), and the
pool is started afresh for the next page.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from multiprocessing.util import Finalize
from typing import Any

import aiohttp
import structlog

from bridge import errors, heap, logs
from bridge.clock import SystemClock
from bridge.config.models import ProviderConfig
from bridge.model import Watch
from bridge.poll.diff import digest64, meaningful_digest
from bridge.providers.base import FetchResult, Provider
from bridge.providers.http import ProviderHttp

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PageRequest:
    """One page of a by-id group, and what the poller knows about it."""

    group: str
    watches: list[Watch]
    keep: frozenset[str]  # the fields rules keep although volatile (they count in the digest)
    known: dict[str, int]  # resource id → stored digest (see `digest64`), for those it has
    # The provider's live replicas (bridge/poll/membership.py): the worker runs with 1/replicas of
    # its own share, so replicas times workers together stay within the credential's limits.
    replicas: int = 1


def share(cfg: ProviderConfig, workers: int) -> ProviderConfig:
    """The provider settings one of `workers` processes runs with: the rate limit and concurrency
    split between them, so together they never exceed what the provider allows (each keeps at least
    one connection: more workers than `max_concurrency` would exceed it, and make no sense)."""
    return cfg.model_copy(
        update={
            "max_requests_per_second": cfg.max_requests_per_second / workers,
            "max_concurrency": max(1, cfg.max_concurrency // workers),
            "fetch_workers": 0,
        }
    )


def triage(fetched: FetchResult, page: PageRequest) -> FetchResult:
    """Drop what is unchanged (counted), check and digest what is not: what a worker sends back."""
    kept = []
    for obs in fetched.observations:
        rid = obs.key.resource_id
        digest = meaningful_digest(obs.state, source=obs.key.source, keep=page.keep)
        if rid not in fetched.terminal and page.known.get(rid) == digest64(digest):
            fetched.unchanged += 1
        elif fetched.passes(obs):
            kept.append(replace(obs, check=None))
            fetched.digests[rid] = digest
    fetched.observations = kept
    fetched.rejected = 0  # the failed checks are in `failures`, and no longer in `observations`
    return fetched


# ------------------------------------------------------------------------------- in the worker


@dataclass(slots=True)
class _Worker:
    loop: asyncio.AbstractEventLoop
    provider: Provider
    session: aiohttp.ClientSession


_worker: _Worker | None = None


def _start_worker(name: str, cfg: ProviderConfig, secrets: list[str], log_settings: dict[str, str]) -> None:
    """Process initializer: this worker's event loop and provider client, for its whole life."""
    global _worker
    from bridge.providers.registry import make_provider  # the providers, not the web app

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the main process, which stops us
    threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()
    logs.configure(level=log_settings["level"], fmt=log_settings["fmt"])
    logs.register_secrets(secrets)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def build() -> tuple[Provider, aiohttp.ClientSession]:
        return make_provider(name, cfg, SystemClock())

    provider, session = loop.run_until_complete(build())
    _worker = _Worker(loop, provider, session)
    Finalize(None, _stop_worker, args=(_worker,), exitpriority=10)  # closes the session on exit
    heap.settle()  # as the bridge's process does: start-up objects out of full collections


def _exit_with_parent() -> None:
    """A main process killed outright (kill -9, the OOM killer) cannot stop its workers: each
    leaves as soon as its parent is gone, instead of lingering as an orphan."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(0)


def _stop_worker(worker: _Worker) -> None:
    async def close() -> None:
        await worker.provider.close()
        await worker.session.close()

    worker.loop.run_until_complete(close())
    worker.loop.close()


def _read_page(page: PageRequest) -> FetchResult:
    """One page in a worker: fetch, then triage (a ProviderError for the whole page is raised)."""
    if _worker is None:
        raise RuntimeError("the fetch worker's initializer did not run")
    http = getattr(_worker.provider, "http", None)
    if isinstance(http, ProviderHttp):
        http.divide(page.replicas)
    fetched = _worker.loop.run_until_complete(_worker.provider.fetch(page.group, page.watches))
    return triage(fetched, page)


# ---------------------------------------------------------------------------- in the main process


class FetchPool:
    """`workers` processes reading one provider's by-id pages; started on first use."""

    def __init__(self, name: str, cfg: ProviderConfig, *, workers: int, secrets: list[str]) -> None:
        self.name = name
        self.workers = workers
        self._initargs: tuple[Any, ...] = (name, share(cfg, workers), secrets, logs.settings())
        self._executor: ProcessPoolExecutor | None = None
        self.replicas = 1  # set by bridge/poll/membership.py on a shared store

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers,
                # spawn, not fork: the main process has threads (SQLite's) and a running loop
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=self._initargs,
            )
        return self._executor

    async def fetch(self, page: PageRequest) -> FetchResult:
        """The page's changed observations (checked, with digests), its failures, and how many were
        read unchanged. A ProviderError of the whole page propagates as it would in process."""
        executor = self._pool()
        if page.replicas != self.replicas:
            page = replace(page, replicas=self.replicas)
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, _read_page, page)
        except BrokenProcessPool as exc:
            self._discard(executor)
            raise errors.ProviderUnavailable(
                f"{self.name}: a fetch worker exited unexpectedly; its pages are read again next poll"
            ) from exc

    def _discard(self, executor: ProcessPoolExecutor) -> None:
        if self._executor is executor:
            log.error("fetch_pool.broken", provider=self.name, workers=self.workers)
            self._executor = None
            executor.shutdown(wait=False, cancel_futures=True)

    def pids(self) -> list[int]:
        """The worker processes running now (benchmarks read their CPU time)."""
        return list(self._executor._processes) if self._executor is not None else []

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.to_thread(executor.shutdown, wait=True, cancel_futures=True)
