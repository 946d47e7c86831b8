"""`/healthz` (the process is alive) and `/readyz` (store reachable, scheduler and delivery running)."""

from __future__ import annotations

from aiohttp import web

from bridge import errors
from bridge.app_keys import DELIVERY_SERVICE, HEALTH, OWNERSHIP, SCHEDULER, STORE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    app = request.app
    checks: dict[str, str] = {}
    try:
        await app[STORE].ping()
        checks["store"] = "ok"
    except errors.StoreError as exc:
        checks["store"] = f"error: {exc}"
    scheduler = app.get(SCHEDULER)
    checks["scheduler"] = "ok" if scheduler is None or scheduler.running else "stopped"
    delivery = app.get(DELIVERY_SERVICE)
    checks["delivery"] = "ok" if delivery is not None and delivery.running else "stopped"
    providers = {name: h.status for name, h in app[HEALTH].providers.items()}
    ready = all(v == "ok" for v in checks.values())
    body: dict[str, object] = {
        "status": "ok" if ready else "unavailable",
        "checks": checks,
        "providers": providers,
    }
    ownership = app.get(OWNERSHIP)
    if ownership is not None:  # which replica answered, and the watch groups it polls now
        body["replica"] = {"id": ownership.replica_id, "leases": sorted(ownership.held)}
    return web.json_response(body, status=200 if ready else 503)
