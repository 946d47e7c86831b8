"""Outbox wake-up across replicas: how late replica B sends a delivery that replica A committed.

Two PostgresStore instances on one fresh schema (the replicas' stores), B's real DeliveryWorker and
WebhookChannel on the system clock, a local receiver. A commits one delivery at a time (a poll
result, as the poller does), at random gaps, so a commit falls anywhere in B's outbox poll period;
the figure is the time from A's commit to the receiver's arrival. Two modes in the same run:

- **notify**: B's LISTEN connection is up (`wattbridge run` on PostgreSQL): A's commit wakes B;
- **poll only**: no listener, B finds the work at its next outbox poll (every second).

    WATTBRIDGE_TEST_PG=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/outbox_wake.py [--n 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime

import aiohttp
import asyncpg
from aiohttp import web

from bridge import logs
from bridge.channels.base import RenderContext
from bridge.channels.webhook import WebhookChannel
from bridge.clock import SystemClock
from bridge.config.models import WebhookChannelConfig
from bridge.deliver.worker import DeliveryWorker
from bridge.model import Change, Delivery, Event, PollResult, ResourceKey, Snapshot, delivery_id, event_id
from bridge.store.postgres import PostgresStore

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def result(i: int, channel: WebhookChannel, now: datetime) -> PollResult:
    key = ResourceKey(source="podero.wallbox", provider="podero", resource_id=f"wb-{i}")
    event = Event(
        id=event_id("charging-started", key, 1, now),
        rule_id="charging-started",
        type="wallbox.charging_started",
        status="firing",
        severity="info",
        key=key,
        sequence=1,
        changes=(Change(field="is_charging", old=False, new=True),),
        state={"is_charging": True},
        occurred_at=now,
    )
    delivery = Delivery(
        id=delivery_id(event.id, channel.name),
        event_id=event.id,
        channel=channel.name,
        body=channel.render(event, RenderContext(old={"is_charging": False})),
        next_attempt_at=now,
        created_at=now,
    )
    snap = Snapshot(key=key, state=event.state, digest="d", sequence=1, updated_at=now)
    return PollResult(snapshot=snap, events=(event,), deliveries=(delivery,))


async def one_mode(url: str, *, listen: bool, n: int, seed: int) -> list[float]:
    """Latencies (ms) from A's commit to arrival at the receiver, for `n` deliveries."""
    arrived: dict[str, float] = {}
    got = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        arrived[request.headers["webhook-id"]] = time.perf_counter()
        got.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    schema = f"wb_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store_a, store_b = (
        PostgresStore(url, schema=schema, pool_size=2),
        PostgresStore(url, schema=schema, pool_size=2),
    )
    clock = SystemClock()
    rng = random.Random(seed)
    latencies: list[float] = []
    stop = asyncio.Event()
    try:
        await store_a.open()
        await store_b.open()
        async with aiohttp.ClientSession() as session:
            cfg = WebhookChannelConfig.model_validate(
                {"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook", "secret": SECRET}
            )
            channel = WebhookChannel("partner", cfg, session=session, clock=clock)
            worker = DeliveryWorker(store_b, {"partner": channel}, clock=clock)
            tasks = [asyncio.create_task(worker.run(stop))]
            if listen:
                loop = store_b.outbox_listener(worker.notified_by_store)
                assert loop is not None
                assert store_b.listener is not None
                tasks.append(asyncio.create_task(loop(stop)))
                await asyncio.wait_for(store_b.listener.listening.wait(), 10)
            for i in range(n):
                await asyncio.sleep(rng.uniform(0.0, 1.0))  # anywhere in B's one-second poll period
                r = result(i, channel, datetime.now(UTC))
                got.clear()
                await store_a.commit([r])
                committed = time.perf_counter()
                d = r.deliveries[0]
                while d.id not in arrived:
                    await asyncio.wait_for(got.wait(), 10)
                    got.clear()
                latencies.append((arrived[d.id] - committed) * 1000)
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await store_a.close()
        await store_b.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()
        await runner.cleanup()
    return latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(url: str, n: int, repeat: int) -> list[tuple[str, int, float, float]]:
    rows = []
    for r in range(repeat):
        for listen in (True, False):
            lat = await one_mode(url, listen=listen, n=n, seed=r)
            rows.append(("notify" if listen else "poll only", r + 1, statistics.median(lat), pct(lat, 0.99)))
    return rows


def main(argv: list[str] | None = None) -> list[tuple[str, int, float, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    url = os.environ.get("WATTBRIDGE_TEST_PG")
    if not url:
        sys.exit("set WATTBRIDGE_TEST_PG=postgresql://USER@HOST:PORT/DATABASE")
    logs.configure(level="warning", fmt="json", stream=io.StringIO())  # quiet, as a bench must be
    rows = asyncio.run(run(url, args.n, args.repeat))
    print(f"{'mode':<10} {'run':>3} {'p50 ms':>8} {'p99 ms':>8}")
    for mode, r, p50, p99 in rows:
        print(f"{mode:<10} {r:>3} {p50:>8.1f} {p99:>8.1f}")
    return rows


if __name__ == "__main__":
    main()
