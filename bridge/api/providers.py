"""`GET /api/providers`: each configured provider's health, last poll, watches and resource counts."""

from __future__ import annotations

from collections import Counter

from aiohttp import web

from bridge.api.models import ProviderHealthOut, ProviderList, ProviderOut
from bridge.api.registry import ApiRoutes
from bridge.app_keys import CONFIG, HEALTH, STORE

routes = ApiRoutes()


@routes.get("/api/providers", summary="Providers: health, last poll, watches and resources", tag="providers")
async def list_providers(request: web.Request) -> ProviderList:
    store, board = request.app[STORE], request.app[HEALTH]
    active = Counter(w.key.provider for w in await store.list_watches(active_only=True))
    items = []
    for name, cfg in request.app[CONFIG].providers.items():
        h = board.providers.get(name) if cfg.enabled else None
        health = None
        if h is not None:
            health = ProviderHealthOut(
                status=h.status,
                consecutive_failures=h.consecutive_failures,
                last_error=h.last_error,
                last_success_at=h.last_success_at,
                last_poll_at=h.last_poll_at,
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
