"""LISTEN/NOTIFY on PostgreSQL: a delivery committed by replica A wakes replica B's idle worker at
once, though B's fallback outbox poll is an hour away (on a ManualClock that never moves, so only the
wake-up can deliver it); B ignores its own notifications; a listener whose connection the server
terminates reconnects by itself and wakes again."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import aiohttp
import asyncpg

from bridge.clock import ManualClock
from bridge.deliver.worker import DeliveryWorker
from bridge.metrics import Metrics
from bridge.store.postgres import PostgresStore
from tests.deliver.test_worker import T0, Receiver, enqueue, serve, webhook, worker_for
from tests.store.conftest import pg_schema
from tests.store.factories import result

HOUR = 3600.0


@contextlib.asynccontextmanager
async def replica_b(
    store: PostgresStore, worker: DeliveryWorker, woke: asyncio.Event | None = None
) -> AsyncIterator[None]:
    """B's delivery worker and outbox listener running, as `wattbridge run` has them (`woke` is
    set at each wake-up, for the test to await)."""
    stop = asyncio.Event()

    def wake() -> None:
        if woke is not None:
            woke.set()
        worker.notified_by_store()

    listen = store.outbox_listener(wake)
    assert listen is not None
    assert store.listener is not None
    tasks = [asyncio.create_task(listen(stop)), asyncio.create_task(worker.run(stop))]
    try:
        await asyncio.wait_for(store.listener.listening.wait(), 20)
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 20)


async def test_a_delivery_committed_by_another_replica_wakes_an_idle_worker_at_once(aiohttp_server):
    clock = ManualClock(T0)  # never advanced: B's fallback poll (1 h) never comes
    receiver = Receiver()
    receiver.url = await serve(aiohttp_server, receiver.hook)
    async with pg_schema() as (url, schema), aiohttp.ClientSession() as session:
        store_a = PostgresStore(url, schema=schema, pool_size=2)
        store_b = PostgresStore(url, schema=schema, pool_size=2)
        await store_a.open()
        await store_b.open()
        metrics = Metrics()
        try:
            channel = webhook(receiver.url, session, clock)
            worker = worker_for(store_b, channel, clock, shared_poll=HOUR, metrics=metrics)
            async with replica_b(store_b, worker):
                # B's own commit notifies too, but B ignores it (its worker is told in memory);
                # notifications arrive in commit order, so it is handled before A's below.
                own = await enqueue(store_b, channel, resource_id="wb-own")
                # Nor does a delivery A leased to its own worker (a hand-over): it is not B's work.
                handed = result("wb-handed-over")
                leased = replace(
                    handed.deliveries[0], next_attempt_at=T0 + timedelta(minutes=1), claim_token=1
                )
                await store_a.commit([replace(handed, deliveries=(leased,))])
                mine = await enqueue(store_a, channel, resource_id="wb-from-a")
                await asyncio.wait_for(_received(receiver, 2), 20)
                assert metrics.outbox_wakeups == 1  # A's plain commit only
        finally:
            await store_a.close()
            await store_b.close()

    sent = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert sent == {own.id, mine.id}


async def test_a_listener_whose_connection_is_terminated_reconnects_and_wakes_again(aiohttp_server):
    clock = ManualClock(T0)
    receiver = Receiver()
    receiver.url = await serve(aiohttp_server, receiver.hook)
    async with pg_schema() as (url, schema), aiohttp.ClientSession() as session:
        store_a = PostgresStore(url, schema=schema, pool_size=2)
        store_b = PostgresStore(url, schema=schema, pool_size=2)
        await store_a.open()
        await store_b.open()
        metrics = Metrics()
        try:
            channel = webhook(receiver.url, session, clock)
            worker = worker_for(store_b, channel, clock, shared_poll=HOUR, metrics=metrics)
            woke = asyncio.Event()
            async with replica_b(store_b, worker, woke):
                listener = store_b.listener
                assert listener is not None
                woke.clear()
                admin = await asyncpg.connect(url)
                try:  # the database drops the listening connection (a failover, an admin)
                    assert await admin.fetchval("SELECT pg_terminate_backend($1)", listener.server_pid)
                finally:
                    await admin.close()
                await asyncio.wait_for(woke.wait(), 20)  # reconnected: it looks once for what it missed
                assert listener.connects == 2
                assert listener.listening.is_set()
                first = await enqueue(store_a, channel, resource_id="wb-after-reconnect")
                await asyncio.wait_for(_received(receiver, 1), 20)
        finally:
            await store_a.close()
            await store_b.close()

    assert listener.connects == 2
    assert metrics.outbox_wakeups >= 1
    assert [headers["webhook-id"] for headers, _ in receiver.requests] == [first.id]


async def _received(receiver: Receiver, n: int) -> None:
    while len(receiver.requests) < n:
        await receiver.arrived.get()
