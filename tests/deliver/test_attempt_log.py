"""Attempt records in a steady stream: outcomes that finish within the window share one write, a
flush writes at once, and a claim never sees a delivery this worker sent (record still in the
window) as due again. The window is made an hour long so nothing depends on timing."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from bridge.channels.base import RenderContext
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.models import WebhookChannelConfig
from bridge.deliver import attempts
from bridge.deliver.attempts import AttemptLog
from bridge.deliver.worker import DeliveryWorker
from bridge.model import Attempt, Change, Delivery, Event, PollResult, ResourceKey, Snapshot, delivery_id
from bridge.store.base import AttemptOutcome
from bridge.store.sqlite import SqliteStore

SECRET = "whsec_" + base64.b64encode(b"attempt-log-test-secret-01234567").decode()
T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


class BatchingStore(SqliteStore):
    """The real store; remembers each write's size and queues each recorded attempt for the test."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.recorded: asyncio.Queue[Attempt] = asyncio.Queue()

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> set[str]:
        self.batches.append(len(outcomes))
        missing = await super().record_attempts(outcomes)
        for outcome in outcomes:
            self.recorded.put_nowait(outcome.attempt)
        return missing


@dataclass
class Receiver:
    requests: list[dict[str, str]] = field(default_factory=list)
    sent: asyncio.Event = field(default_factory=asyncio.Event)

    async def hook(self, request: web.Request) -> web.Response:
        await request.read()
        self.requests.append(dict(request.headers))
        return web.Response(status=204)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[BatchingStore]:
    s = BatchingStore(tmp_path / "outbox.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def receiver(aiohttp_server) -> tuple[Receiver, str]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.hook)
    server = await aiohttp_server(app)
    return rec, str(server.make_url("/hook"))


@pytest.fixture
async def channel(receiver, clock) -> AsyncIterator[WebhookChannel]:
    cfg = WebhookChannelConfig.model_validate({"kind": "webhook", "url": receiver[1], "secret": SECRET})
    async with aiohttp.ClientSession() as session:
        ch = WebhookChannel("partner", cfg, session=session, clock=clock)
        yield ch
        await ch.close()


async def enqueue(store: SqliteStore, channel: WebhookChannel, resource_id: str) -> Delivery:
    key = ResourceKey(source="podero.wallbox", provider="podero", resource_id=resource_id)
    event = Event(
        id=f"evt_{resource_id}", rule_id="r", type="wallbox.charging_started", status="firing",
        severity="info", key=key, sequence=1, changes=(Change(field="is_charging", old=False, new=True),),
        state={"is_charging": True}, occurred_at=T0,
    )  # fmt: skip
    delivery = Delivery(
        id=delivery_id(event.id, channel.name), event_id=event.id, channel=channel.name,
        body=channel.render(event, RenderContext(old=None)), next_attempt_at=T0, created_at=T0,
    )  # fmt: skip
    snapshot = Snapshot(key=key, state=event.state, digest="d", sequence=1, updated_at=T0)
    await store.commit([PollResult(snapshot=snapshot, events=(event,), deliveries=(delivery,))])
    return delivery


def delivered(delivery_id: str, number: int = 1) -> AttemptOutcome:
    attempt = Attempt(delivery_id=delivery_id, number=number, at=T0, ok=True, status_code=204, latency_ms=1.0)
    return AttemptOutcome(attempt=attempt, status="delivered", next_attempt_at=None)


async def test_outcomes_within_the_window_share_one_write_and_flush_writes_at_once(store, channel):
    ds = [await enqueue(store, channel, f"wb-{i}") for i in range(3)]
    log = AttemptLog(store, window_s=3600)

    log.add(delivered(ds[0].id))  # a lone outcome: written at once
    await asyncio.wait_for(store.recorded.get(), 30)
    log.add(delivered(ds[1].id))
    log.add(delivered(ds[2].id))
    await asyncio.sleep(0)  # the writer runs up to its wait
    await store.outbox_depth()  # a write queued before this read would be done by now (one thread)
    assert store.batches == [1]
    assert [(await store.get_delivery(d.id)).status for d in ds] == ["delivered", "pending", "pending"]

    await log.flush()
    assert store.batches == [1, 2]
    assert {(await store.get_delivery(d.id)).status for d in ds} == {"delivered"}


async def test_a_claim_first_writes_the_records_still_in_the_window(
    store, channel, receiver, clock, monkeypatch
):
    monkeypatch.setattr(attempts, "STREAM_WINDOW_S", 3600.0)
    worker = DeliveryWorker(store, {channel.name: channel}, clock=clock, lease=timedelta(seconds=60))
    rec, _ = receiver
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        first = await enqueue(store, channel, "wb-1")
        worker.notify()
        await asyncio.wait_for(store.recorded.get(), 30)  # the first record: at once
        second = await enqueue(store, channel, "wb-2")
        worker.notify()
        for _ in range(10_000):  # until it is sent and its outcome queued (event-loop turns, no time)
            if worker.attempts_made == 2:
                break
            await asyncio.sleep(0)
        assert worker.attempts_made == 2
        assert (await store.get_delivery(second.id)).status == "pending"

        clock.advance(timedelta(seconds=61))  # its lease is over: a claim would take it again...
        worker.notify()
        recorded = await asyncio.wait_for(store.recorded.get(), 30)  # ...but the claim writes it first
        assert recorded.delivery_id == second.id
    finally:
        stop.set()
        await running
    assert [h["webhook-id"] for h in rec.requests] == [first.id, second.id]  # each sent once
    assert {(await store.get_delivery(d.id)).status for d in (first, second)} == {"delivered"}
    assert store.batches == [1, 1]
