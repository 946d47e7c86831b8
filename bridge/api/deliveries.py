"""`/api/deliveries`: the outbox (with every attempt), and replay with the same webhook-id.

Replay is the store's, shared with `wattbridge deliveries replay`: the delivery becomes pending again
with its id and bytes unchanged, and the running worker is woken to send it now.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from bridge.api.events import event_out
from bridge.api.json_errors import ApiError
from bridge.api.models import (
    AttemptOut,
    DeliveryDetail,
    DeliveryListQuery,
    DeliveryOut,
    DeliveryPage,
    IdPath,
    ReplayResult,
    decode_cursor,
    split_page,
)
from bridge.api.registry import ApiRoutes
from bridge.app_keys import CLOCK, DELIVERY, STORE
from bridge.model import Delivery
from bridge.store.base import DeliveryQuery, Store

log = structlog.get_logger(__name__)
routes = ApiRoutes()
REPLAYABLE = ("delivered", "dead", "suppressed")


def delivery_out(d: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=d.id,
        event_id=d.event_id,
        channel=d.channel,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        created_at=d.created_at,
        last_error=d.last_error,
    )


async def _get(store: Store, delivery_id: str) -> Delivery:
    delivery = await store.get_delivery(delivery_id)
    if delivery is None:
        raise ApiError(404, "no such delivery", f"no delivery {delivery_id!r}")
    return delivery


@routes.get("/api/deliveries", summary="List deliveries (newest first)", tag="deliveries")
async def list_deliveries(request: web.Request, query: DeliveryListQuery) -> DeliveryPage:
    q = DeliveryQuery(
        status=query.status,
        channel=query.channel,
        event_id=query.event_id,
        after=None if query.cursor is None else decode_cursor(query.cursor),
    )
    found = await request.app[STORE].page_deliveries(q, limit=query.limit + 1)
    page, cursor = split_page(found, query.limit, lambda d: (d.created_at, d.id))
    return DeliveryPage(items=[delivery_out(d) for d in page], next_cursor=cursor)


@routes.get(
    "/api/deliveries/{id}",
    summary="One delivery, its event and every attempt",
    tag="deliveries",
    errors=(404,),
)
async def get_delivery(request: web.Request, path: IdPath) -> DeliveryDetail:
    store = request.app[STORE]
    d = await _get(store, path.id)
    event = await store.get_event(d.event_id)
    attempts = await store.list_attempts(d.id)
    return DeliveryDetail(
        **delivery_out(d).model_dump(),
        body=d.body.decode("utf-8", errors="replace"),
        event=None if event is None else event_out(event),
        attempt_log=[
            AttemptOut(
                number=a.number,
                at=a.at,
                ok=a.ok,
                status_code=a.status_code,
                latency_ms=a.latency_ms,
                error=a.error,
                response_excerpt=a.response_excerpt,
            )
            for a in attempts
        ],
    )


@routes.post(
    "/api/deliveries/{id}/replay",
    summary="Send a delivered, dead or suppressed delivery again (same webhook-id, same body)",
    tag="deliveries",
    status=202,
    errors=(404, 409),
)
async def replay_delivery(request: web.Request, path: IdPath) -> ReplayResult:
    store = request.app[STORE]
    d = await _get(store, path.id)
    if d.status not in REPLAYABLE:
        raise ApiError(
            409,
            "not replayable",
            f"delivery {d.id!r} is {d.status}; only {', '.join(REPLAYABLE)} deliveries can be replayed",
        )
    if await store.replay([d.id], request.app[CLOCK].now()) == 0:  # it moved on since we read it
        raise ApiError(409, "not replayable", f"delivery {d.id!r} changed state; read it again")
    log.info("delivery.replay_requested", delivery_id=d.id, channel=d.channel, was=d.status)
    worker = request.app.get(DELIVERY)
    if worker is not None:
        worker.notify()
    return ReplayResult(delivery=delivery_out(await _get(store, d.id)))
