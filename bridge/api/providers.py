"""`GET /api/providers`: each configured provider's health, back-off, last poll, watches and resource
counts."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from bridge.api.models import BACKOFF_SHOWN, BackoffOut, ProviderHealthOut, ProviderList, ProviderOut
from bridge.api.registry import ApiRoutes
from bridge.app_keys import CLOCK, CONFIG, HEALTH, STORE

routes = ApiRoutes()


@routes.get("/api/providers", summary="Providers: health, last poll, watches and resources", tag="providers")
async def list_providers(request: web.Request) -> ProviderList:
    store, board, now = request.app[STORE], request.app[HEALTH], request.app[CLOCK].now()
    active = Counter(w.key.provider for w in await store.list_watches(active_only=True))
    items = []
    for name, cfg in request.app[CONFIG].providers.items():
        h = board.providers.get(name) if cfg.enabled else None
        health = None
        if h is not None:
            deferred, backing_off = h.deferral(now), h.backing_off(now)
            health = ProviderHealthOut(
                status=h.status,
                consecutive_failures=h.consecutive_failures,
                last_error=h.last_error,
                last_success_at=h.last_success_at,
                last_poll_at=h.last_poll_at,
                deferred_until=deferred.until if deferred is not None else None,
                deferred_cause=deferred.cause if deferred is not None else None,
                deferred=deferred.describe() if deferred is not None else None,
                retry_after_capped=h.backoff is not None and h.backoff.capped(now),
                resources_backing_off=len(backing_off),
                backing_off=[
                    BackoffOut(resource_id=rid, until=d.until, cause=d.cause, failures=d.failures)
                    for rid, d in list(backing_off.items())[:BACKOFF_SHOWN]
                ],
            )
        items.append(
            ProviderOut(
                name=name,
                kind=cfg.kind,
                enabled=cfg.enabled,
                poll_interval_s=cfg.poll_interval.total_seconds(),
                health=health,
                active_watches=active[name],
                resources=await store.resource_counts(name),
            )
        )
    return ProviderList(items=items)
