"""`/api/watches`: register what to poll at run time (an onboarding session right after a partner
created it, a WattShift home, a Podero device of any family), list, read and delete watches.

A registered watch is stored (so it survives restarts) and picked up by the poller on the next
cycle of its provider's watch group. Onboarding watches end by themselves at a terminal state
(Podero: finished, expired or gone; WattShift: COMPLETED, ERROR or gone; Realto: a command or
onboarding request Succeeded, Failed or Canceled, or gone), like configured ones;
a device watch lasts until it is deleted.
"""

from __future__ import annotations

import hashlib

import structlog
from aiohttp import web

from bridge.api.json_errors import ApiError
from bridge.api.models import IdPath
from bridge.api.registry import ApiRoutes
from bridge.api.watch_models import (
    PoderoDeviceWatch,
    PoderoOnboardingWatch,
    RealtoCommandWatch,
    RealtoGuidedSessionWatch,
    WatchCreate,
    WatchList,
    WatchListQuery,
    WatchOut,
)
from bridge.app_keys import CLOCK, CONFIG, STORE
from bridge.config.models import Config
from bridge.model import JSON, ResourceKey, Watch
from bridge.providers.podero_models import KIND_BY_SOURCE
from bridge.store.base import Store

log = structlog.get_logger(__name__)
routes = ApiRoutes()

KIND_OF_SOURCE = {
    "podero.onboarding_session": "podero",
    "podero.wallbox": "podero",
    "podero.heat_pump": "podero",
    "podero.electric_vehicle": "podero",
    "podero.inverter": "podero",
    "realto.command": "realto",
    "realto.guided_onboarding_session": "realto",
    "wattshift.onboarding": "wattshift",
}


def watch_id(key: ResourceKey) -> str:
    """A stable, URL-safe id for a watch (the store keys watches by provider, source and resource)."""
    raw = f"{key.provider}\x1f{key.source}\x1f{key.resource_id}".encode()
    return "wat_" + hashlib.blake2b(raw, digest_size=12).hexdigest()


def watch_out(w: Watch) -> WatchOut:
    return WatchOut(
        id=watch_id(w.key),
        provider=w.key.provider,
        source=w.key.source,
        resource_id=w.key.resource_id,
        params=w.params,
        created_at=w.created_at,
        ended_at=w.ended_at,
        end_reason=w.end_reason,
        active=w.ended_at is None,
    )


async def _find(store: Store, wanted: str) -> Watch:
    for w in await store.list_watches(active_only=False):
        if watch_id(w.key) == wanted:
            return w
    raise ApiError(404, "no such watch", f"no watch {wanted!r}")


def _check_provider(config: Config, name: str, source: str) -> None:
    cfg = config.providers.get(name)
    needed = KIND_OF_SOURCE[source]
    if cfg is None:
        known = ", ".join(sorted(config.providers)) or "none"
        raise ApiError(422, "unknown provider", f"no provider {name!r} is configured (configured: {known})")
    if cfg.kind != needed:
        raise ApiError(
            422,
            "wrong provider kind",
            f"provider {name!r} is a {cfg.kind} provider; {source} watches need a {needed} provider",
        )
    if not cfg.enabled:
        raise ApiError(422, "provider disabled", f"provider {name!r} is disabled (enabled = false)")


@routes.get("/api/watches", summary="List watches (configured and registered)", tag="watches")
async def list_watches(request: web.Request, query: WatchListQuery) -> WatchList:
    found = await request.app[STORE].list_watches(
        provider=query.provider, source=query.source, active_only=query.state == "active"
    )
    if query.state == "ended":
        found = [w for w in found if w.ended_at is not None]
    return WatchList(items=[watch_out(w) for w in found])


@routes.post(
    "/api/watches",
    summary="Watch a resource from the next poll on (re-registering re-opens an ended watch)",
    tag="watches",
    status=201,
)
async def create_watch(request: web.Request, body: WatchCreate) -> WatchOut:
    spec = body.root
    _check_provider(request.app[CONFIG], spec.provider, spec.source)
    params: dict[str, JSON] = {}
    if isinstance(spec, PoderoOnboardingWatch):
        resource_id = str(spec.session_id)
    elif isinstance(spec, RealtoCommandWatch):
        resource_id, params = str(spec.command_id), {"entity_id": str(spec.entity_id)}
    elif isinstance(spec, RealtoGuidedSessionWatch):
        resource_id = str(spec.session_id)
    elif isinstance(spec, PoderoDeviceWatch):
        id_param = KIND_BY_SOURCE[spec.source].id_param
        resource_id, params = str(getattr(spec, id_param)), {"user_id": str(spec.user_id)}
    else:
        resource_id = spec.home_id
    key = ResourceKey(source=spec.source, provider=spec.provider, resource_id=resource_id)
    store = request.app[STORE]
    await store.add_watch(Watch(key=key, params=params, created_at=request.app[CLOCK].now()))
    log.info("watch.registered", provider=key.provider, source=key.source, resource_id=key.resource_id)
    return watch_out(await _find(store, watch_id(key)))


@routes.get("/api/watches/{id}", summary="One watch", tag="watches", errors=(404,))
async def get_watch(request: web.Request, path: IdPath) -> WatchOut:
    return watch_out(await _find(request.app[STORE], path.id))


@routes.delete(
    "/api/watches/{id}", summary="Stop watching and forget the watch", tag="watches", errors=(404,)
)
async def delete_watch(request: web.Request, path: IdPath) -> WatchOut:
    store = request.app[STORE]
    watch = await _find(store, path.id)
    if not await store.delete_watch(watch.key):
        raise ApiError(404, "no such watch", f"no watch {path.id!r}")
    log.info(
        "watch.deleted",
        provider=watch.key.provider,
        source=watch.key.source,
        resource_id=watch.key.resource_id,
    )
    return watch_out(watch)
