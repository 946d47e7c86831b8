"""`GET /metrics`: Prometheus text format, with the outbox and health gauges read at scrape time.

Unauthenticated like `/healthz`, as Prometheus scrapes usually are: it carries counts and names
(providers, channels, rules), never payloads or secrets. Bind the server to loopback or firewall
the port when those names are not for everyone.
"""

from __future__ import annotations

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge import errors
from bridge.app_keys import CHANNELS, CLOCK, DELIVERY, HEALTH, METRICS, OWNERSHIP, POLLER, RULEBOOK, STORE
from bridge.metrics import BridgeState, ProviderView
from bridge.store.base import OutboxCounts

log = structlog.get_logger(__name__)
routes = web.RouteTableDef()


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    app = request.app
    app[METRICS].observe(await bridge_state(app))
    return web.Response(
        body=generate_latest(app[METRICS].registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def bridge_state(app: web.Application) -> BridgeState:
    """Read what the scrape-time gauges show: the outbox from the store, health from the components."""
    try:
        outbox: OutboxCounts | None = await app[STORE].outbox_counts()
    except errors.StoreError as exc:  # the counters and health are still worth a scrape
        log.warning("metrics.store_unavailable", error=str(exc))
        outbox = None
    rulebook = app[RULEBOOK]
    worker = app[DELIVERY]
    now = app[CLOCK].now()
    return BridgeState(
        now=now,
        outbox=outbox,
        providers={
            name: ProviderView(
                status=h.status,
                consecutive_failures=h.consecutive_failures,
                last_success_at=h.last_success_at,
                deferred_until=d.until if (d := h.deferral(now)) is not None else None,
                deferred_kind=d.kind if d is not None else None,
                resources_backing_off=len(h.backing_off(now)),
            )
            for name, h in app[HEALTH].providers.items()
        },
        channels={name: str(worker.channel_state(name)["status"]) for name in app[CHANNELS]},
        rules_loaded=len(rulebook.current.rules),
        rule_reloads_ok=rulebook.reloads_ok,
        rule_reloads_failed=rulebook.reloads_failed,
        rules_loaded_at=rulebook.loaded_at,
        last_reload_ok=rulebook.last_reload_ok,
        replica_id=ownership.replica_id if (ownership := app.get(OWNERSHIP)) is not None else None,
        leases_held=len(ownership.held) if ownership is not None else 0,
        flapping=_flapping(app),
    )


def _flapping(app: web.Application) -> dict[str, int]:
    """Resources flapping now, by rule; every rule with `flap` is listed (0: none)."""
    out = {r.id: 0 for r in app[RULEBOOK].current.rules if r.flap is not None}
    for st in app[POLLER].flapping:
        out[st.rule_id] = out.get(st.rule_id, 0) + 1
    return out
