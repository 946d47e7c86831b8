"""A zombie worker's late record is refused: two delivery workers on one SQLite file (two processes,
e.g. a `wattbridge run` and a second one started by mistake, or replicas on PostgreSQL), the first
one's send outlives its claim, the second claims and delivers, and the first one's late failure
must not turn the delivered record back into a pending retry."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
import orjson

from bridge.clock import ManualClock
from bridge.metrics import Metrics
from bridge.store.sqlite import SqliteStore
from tests.deliver.test_worker import T0, Receiver, enqueue, serve, webhook, worker_for


async def test_a_paused_workers_late_record_is_refused_counted_and_logged(
    tmp_path, aiohttp_server, json_logs
):
    clock = ManualClock(T0)
    receiver = Receiver()
    receiver.url = await serve(aiohttp_server, receiver.hook)
    session = aiohttp.ClientSession()
    path = tmp_path / "outbox.db"
    store_a, store_b = SqliteStore(path), SqliteStore(path)
    await store_a.open()
    await store_b.open()
    receiver.hold = asyncio.Event()  # A's request hangs at the receiver (A is "paused")
    receiver.default = 503  # ... and when it comes back, it is a failure A wants to record
    prompt = Receiver()
    metrics_a = Metrics()
    try:
        channel_a = webhook(receiver.url, session, clock)
        channel_b = webhook(await serve(aiohttp_server, prompt.hook), session, clock)
        worker_a = worker_for(store_a, channel_a, clock, lease=timedelta(seconds=60), metrics=metrics_a)
        worker_b = worker_for(store_b, channel_b, clock, lease=timedelta(seconds=60))
        delivery = await enqueue(store_a, channel_a)

        zombie = asyncio.create_task(worker_a.run_until_idle())
        await asyncio.wait_for(receiver.arrived.get(), 5)  # A claimed (token 1) and is sending
        clock.advance(timedelta(seconds=61))  # A's claim runs out while it is stuck
        assert await worker_b.run_until_idle() == 1  # B claims (token 2) and delivers
        receiver.hold.set()  # A's send finally returns its 503
        assert await asyncio.wait_for(zombie, 5) == 1

        done = await store_a.get_delivery(delivery.id)
        attempts = await store_a.list_attempts(delivery.id)
    finally:
        await store_a.close()
        await store_b.close()
        await session.close()

    assert done is not None
    assert (done.status, done.attempts, done.last_error) == ("delivered", 1, None)  # B's record stands
    assert [(a.ok, a.status_code) for a in attempts] == [(True, 200)]
    assert len(receiver.requests) == len(prompt.requests) == 1  # sent by both: at least once, same id
    assert receiver.requests[0][0]["webhook-id"] == prompt.requests[0][0]["webhook-id"]
    assert metrics_a.fenced_refused == {"delivery": 1}
    fenced = [
        e
        for e in map(orjson.loads, json_logs.getvalue().splitlines())
        if e["event"] == "delivery.record_fenced"
    ]
    assert [(e["delivery_id"], e["claim_token"], e["outcome"]) for e in fenced] == [
        (delivery.id, 1, "pending")
    ]
