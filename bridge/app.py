"""create_app: the aiohttp application owns every component's lifecycle (STYLE.md §9.2).

Started in this order, stopped in reverse: the store opens first and closes last; the scheduler
starts last and stops first (no new polls), then deliveries drain, then HTTP sessions close.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from bridge.api import health, setup_admin_api
from bridge.api import metrics as metrics_api
from bridge.api.limits import request_timeout
from bridge.app_keys import (
    CHANNELS,
    CLOCK,
    CONFIG,
    DELIVERY,
    DELIVERY_SERVICE,
    DIGESTER,
    FETCH_POOLS,
    HAND_OVER,
    HEALTH,
    METRICS,
    ON_CRASH,
    OWNERSHIP,
    POLLER,
    PROVIDERS,
    RULEBOOK,
    SCHEDULER,
    STORE,
)
from bridge.channels.base import Channel
from bridge.channels.registry import build_channels, channel_session
from bridge.clock import Clock, SystemClock
from bridge.config.models import Config, WebhookChannelConfig
from bridge.config.windows import channel_windows
from bridge.deliver.fallback import FallbackRouter
from bridge.deliver.ratelimit import rate_limits
from bridge.deliver.replay import disabled_in_store
from bridge.deliver.retry import DEFAULT_SCHEDULE, RetryPolicy
from bridge.deliver.worker import DeliveryWorker
from bridge.errors import StoreError
from bridge.lifecycle import Service
from bridge.logs import register_secrets
from bridge.metrics import Metrics
from bridge.model import CHANNEL_PROVIDER, CHANNEL_SOURCE, ResourceKey, Watch
from bridge.notify.batches import Digester, digest_configs
from bridge.notify.links import LinkSigner
from bridge.notify.rulebook import RuleBook, load_for
from bridge.poll.cycle import Poller
from bridge.poll.fetch_pool import FetchPool
from bridge.poll.health import HealthBoard
from bridge.poll.membership import Membership
from bridge.poll.ownership import PollOwnership
from bridge.poll.scheduler import PollScheduler
from bridge.poll.timers import timer_loop
from bridge.providers.base import Provider
from bridge.providers.registry import make_provider
from bridge.store.base import Store
from bridge.store.factory import store_for_url
from bridge.store.retention import Pruner, retention_loop
from bridge.web.links import setup_links
from bridge.web.status import setup_status_page

log = structlog.get_logger(__name__)


def open_store_for(config: Config) -> Store:
    """The store named by `[store] url`: the embedded SQLite default, or PostgreSQL."""
    return store_for_url(
        config.store.url,
        synchronous=config.store.synchronous,
        group_commit_window=config.store.group_commit_window,
    )


def create_app(
    config: Config,
    *,
    clock: Clock | None = None,
    start_scheduler: bool = True,
    handoff: bool | None = None,
    on_crash: Callable[[str, BaseException], None] | None = None,
) -> web.Application:
    """Build the bridge. Rules are loaded (and validated) now, so a bad rule set fails before start."""
    register_secrets(config.secret_values())
    app = web.Application(
        client_max_size=config.server.max_body_size,
        middlewares=[request_timeout(config.server.request_timeout.total_seconds())],
    )
    app[CONFIG] = config
    app[CLOCK] = clock or SystemClock()
    app[RULEBOOK] = RuleBook(config, load_for(config), clock=app[CLOCK])
    app[HEALTH] = HealthBoard()
    app[METRICS] = Metrics()
    app[ON_CRASH] = on_crash or (lambda name, exc: None)
    # Fresh deliveries go from the commit to the sender in memory (#16). Tests that drive the bridge
    # by hand on a ManualClock (no scheduler) take the claim path unless they ask: a send in flight
    # while a test jumps the clock would be signed at one time and checked at another. The hand-over
    # has its own tests (tests/deliver/test_handoff.py) and runs in every `wattbridge run` test.
    app[HAND_OVER] = start_scheduler if handoff is None else handoff
    app.add_routes(health.routes)
    setup_status_page(app)
    setup_links(app)
    app.add_routes(metrics_api.routes)
    setup_admin_api(app)
    app.cleanup_ctx.extend([_store, _providers, _channels, _delivery])
    if start_scheduler:  # tests drive polls and rule timers by hand, on a ManualClock
        # Leases first: the timer loop ticks under the `timers` lease, and stops before its release.
        app.cleanup_ctx.extend([_ownership, _timers, _retention, _scheduler])
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = open_store_for(app[CONFIG])
    await store.open()
    app[STORE] = store
    yield
    await store.close()


async def _providers(app: web.Application) -> AsyncIterator[None]:
    providers: dict[str, Provider] = {}
    sessions: list[aiohttp.ClientSession] = []
    pools: dict[str, FetchPool] = {}
    try:
        for name, cfg in app[CONFIG].providers.items():
            if not cfg.enabled:
                continue
            provider, session = make_provider(name, cfg, app[CLOCK])
            providers[name] = provider
            sessions.append(session)
            app[HEALTH].configure(name, interval=cfg.poll_interval, cap=cfg.backoff_cap)
            if cfg.fetch_workers:
                secrets = app[CONFIG].secret_values()
                pools[name] = FetchPool(name, cfg, workers=cfg.fetch_workers, secrets=secrets)
        await _register_static_watches(app[STORE], providers.values(), app[CLOCK].now())
        app[PROVIDERS] = providers
        app[FETCH_POOLS] = pools
        yield
    finally:
        for pool in pools.values():
            await pool.close()
        for provider in providers.values():
            await provider.close()
        for session in sessions:
            await session.close()


async def _register_static_watches(store: Store, providers: Iterable[Provider], now: datetime) -> None:
    """Config watches join the stored ones; an ended watch stays ended (it reached a terminal state)."""
    for provider in providers:
        known = {
            (w.key.source, w.key.resource_id)
            for w in await store.list_watches(provider=provider.name, active_only=False)
        }
        for source, resource_id, params in provider.static_watches():
            if (source, resource_id) not in known:
                key = ResourceKey(source=source, provider=provider.name, resource_id=resource_id)
                await store.add_watch(Watch(key=key, params=params, created_at=now))


async def _channels(app: web.Application) -> AsyncIterator[None]:
    async with channel_session(app[CONFIG]) as session:
        channels = build_channels(app[CONFIG], session=session, clock=app[CLOCK])
        app[CHANNELS] = channels
        try:
            yield
        finally:
            for channel in channels.values():
                await channel.close()


async def _delivery(app: web.Application) -> AsyncIterator[None]:
    channels: dict[str, Channel] = app[CHANNELS]

    async def channel_health(name: str, state: dict[str, Any]) -> None:
        await app[POLLER].observe_internal(
            ResourceKey(source=CHANNEL_SOURCE, provider=CHANNEL_PROVIDER, resource_id=name), state
        )

    worker = DeliveryWorker(
        app[STORE],
        channels,
        clock=app[CLOCK],
        lease=_lease(app[CONFIG]),
        policies=retry_policies(app[CONFIG]),
        limits=rate_limits(app[CONFIG].channels),
        concurrency=app[CONFIG].server.delivery_concurrency,
        on_health=channel_health,
        metrics=app[METRICS],
        fallback=FallbackRouter(
            app[STORE],
            channels,
            {n: c.fallback for n, c in app[CONFIG].channels.items() if c.fallback is not None},
            rules=lambda: app[RULEBOOK].current,
        ),
    )
    app[DELIVERY] = worker
    app[POLLER] = Poller(
        store=app[STORE],
        rulebook=app[RULEBOOK],
        channels=channels,
        clock=app[CLOCK],
        health=app[HEALTH],
        on_committed=worker.notify,
        handoff=worker if app[HAND_OVER] else None,
        digest_groups={name: tuple(c.group_by) for name, c in digest_configs(app[CONFIG].channels).items()},
        metrics=app[METRICS],
        fetch_pools=app[FETCH_POOLS],
        event_types={n: c.accepts for n, c in app[CONFIG].channels.items() if c.event_types is not None},
        windows=channel_windows(app[CONFIG].channels),
        links=LinkSigner.from_config(app[CONFIG].server),
    )
    app[DIGESTER] = Digester(
        app[STORE],
        digest_configs(app[CONFIG].channels),
        clock=app[CLOCK],
        on_committed=worker.notify,
        rules=lambda: app[RULEBOOK].current,
    )
    await app[POLLER].load_health()
    await app[POLLER].load_state()
    # A channel a 410 disabled stays disabled across a restart, until the API, the status page or
    # `wattbridge channels enable` re-enables it (#14): the stored `bridge.channel` state says so.
    for name in await disabled_in_store(app[STORE], list(channels)):
        if hasattr(channels[name], "disabled"):
            channels[name].disabled = True  # type: ignore[attr-defined]  # webhook-like channels only
            log.warning("channel.still_disabled", channel=name)
    for name in channels:  # the healthy baseline, so the first trouble is a change that rules see
        await channel_health(name, worker.channel_state(name))
    drain = app[CONFIG].server.drain_timeout.total_seconds()
    # Replicas: another replica's commit of due deliveries wakes this worker at once (PostgreSQL
    # LISTEN/NOTIFY); the worker's outbox poll stays the fallback. None on SQLite (one process).
    listen = app[STORE].outbox_listener(worker.notified_by_store)
    async with contextlib.AsyncExitStack() as stack:
        if listen is not None:
            await stack.enter_async_context(Service(listen, name="outbox-listener", on_crash=app[ON_CRASH]))
        service = Service(worker.run, name="delivery", drain=drain, on_crash=app[ON_CRASH])
        app[DELIVERY_SERVICE] = await stack.enter_async_context(service)
        yield


def retry_policies(config: Config) -> dict[str, RetryPolicy]:
    """Each channel's retry schedule (SPEC §6 default unless the channel sets `retry`)."""
    return {
        name: RetryPolicy(
            schedule=tuple(c.retry) if c.retry else DEFAULT_SCHEDULE, retry_after_cap=c.retry_after_cap
        )
        for name, c in config.channels.items()
    }


def _lease(config: Config) -> timedelta:
    """A claimed delivery is leased well past the slowest channel's timeout, so a send in flight is
    never claimed twice; a crashed worker's claim still expires and is retried. The lease is also how
    long a send cut short by kill -9 waits before it goes out again, so it follows the configured
    timeouts (60 s with the defaults) instead of a fixed minute; 5 s is a floor for store latency."""
    timeouts = [config.smtp.timeout] + [
        c.timeout for c in config.channels.values() if isinstance(c, WebhookChannelConfig)
    ]
    return max(timedelta(seconds=5), 2 * max(timeouts))


async def _timers(app: web.Application) -> AsyncIterator[None]:
    """Rule holds and reminders, ticking between polls (replicas: by the `timers` lease's holder)."""
    ownership = app[OWNERSHIP] if app[STORE].shared else None
    loop = timer_loop(app[POLLER], app[DIGESTER], ownership=ownership, metrics=app[METRICS])
    async with Service(loop, name="timers", on_crash=app[ON_CRASH]):
        yield


async def _retention(app: web.Application) -> AsyncIterator[None]:
    """History older than `[retention]` ages, pruned in small batches between polls (#14)."""
    cfg = app[CONFIG].retention
    pruner = Pruner(app[STORE], cfg, clock=app[CLOCK])
    loop = retention_loop(pruner, every=cfg.every.total_seconds())
    async with Service(loop, name="retention", on_crash=app[ON_CRASH]):
        yield


async def _ownership(app: web.Application) -> AsyncIterator[None]:
    """Poll-group and timer leases: heartbeats while running, released after the scheduler and the
    timer loop have stopped."""
    cluster = app[CONFIG].cluster
    shared = app[STORE].shared
    # Replicas split each provider's limits between the live ones (bridge/poll/membership.py).
    membership = (
        Membership(
            app[STORE],
            app[CLOCK],
            replica_id=cluster.replica_id,
            period=cluster.lease_period,
            providers=app[PROVIDERS],
            pools=app[FETCH_POOLS],
        )
        if shared
        else None
    )
    ownership = PollOwnership(
        app[STORE],
        app[CLOCK],
        replica_id=cluster.replica_id,
        period=cluster.lease_period,
        membership=membership,
    )
    app[OWNERSHIP] = ownership
    if membership is None:  # one process (SQLite): every group is this one's, the whole limits
        yield
        return
    try:  # joined before the first poll, so the first polls already run with this replica's share
        await membership.heartbeat()
    except StoreError as exc:
        log.warning("cluster.join_failed", error=str(exc))
    async with Service(ownership.loop(), name="leases", on_crash=app[ON_CRASH]):
        yield


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    ownership = app[OWNERSHIP] if app[STORE].shared else None
    scheduler = PollScheduler(
        app[POLLER],
        list(app[PROVIDERS].values()),
        ownership=ownership,
        shards=app[CONFIG].cluster.shards,
    )
    scheduler.start()
    app[SCHEDULER] = scheduler
    yield
    await scheduler.stop(drain=app[CONFIG].server.drain_timeout.total_seconds())
