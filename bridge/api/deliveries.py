"""`/api/deliveries`: the outbox (with every attempt), and replay with the same webhook-id.

Replay is `bridge/deliver/replay.py`, shared with `wattbridge deliveries replay` and the status page:
the delivery becomes pending again with its id and bytes unchanged, and the running worker is woken
to send it now. A delivery whose channel a 410 disabled is refused with 409 and how to re-enable it.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from bridge import errors
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
from bridge.deliver.replay import replay
from bridge.model import Delivery
from bridge.store.base import DeliveryQuery, Store

log = structlog.get_logger(__name__)
routes = ApiRoutes()


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
    worker = request.app.get(DELIVERY)
    disabled = worker.disabled_channels() if worker is not None else {}
    try:
        replayed = await replay(store, [d.id], request.app[CLOCK].now(), disabled=disabled, by="api")
    except errors.ReplayRefused as exc:
        title = "channel disabled" if exc.reason == "channel_disabled" else "not replayable"
        raise ApiError(409, title, str(exc)) from exc
    if replayed == 0:  # it moved on since we read it
        raise ApiError(409, "not replayable", f"delivery {d.id!r} changed state; read it again")
    if worker is not None:
        worker.notify()
    return ReplayResult(delivery=delivery_out(await _get(store, d.id)))
