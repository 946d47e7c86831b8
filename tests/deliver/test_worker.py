"""The outbox worker: retries on schedule with one webhook-id, dead letters, replay, and its run loop."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from bridge.channels.base import RenderContext, SendResult
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.models import WebhookChannelConfig
from bridge.deliver.retry import RetryPolicy
from bridge.deliver.worker import DeliveryWorker
from bridge.errors import StoreError
from bridge.model import (
    Attempt,
    Change,
    Delivery,
    Event,
    PollResult,
    ResourceKey,
    Snapshot,
    delivery_id,
    event_id,
)
from bridge.store.base import AttemptOutcome, Recorded
from bridge.store.sqlite import SqliteStore

SECRET = "whsec_" + base64.b64encode(b"delivery-test-secret-0123456789a").decode()
T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """Answers with scripted statuses (then `default`); can hold requests until released."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    arrived: asyncio.Queue[int] = field(default_factory=asyncio.Queue)
    hold: asyncio.Event | None = None
    url: str = ""

    async def hook(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        self.arrived.put_nowait(len(self.requests))
        if self.hold is not None:
            await self.hold.wait()
        return web.Response(status=self.statuses.pop(0) if self.statuses else self.default)


class RecordingStore(SqliteStore):
    """The real store, plus a queue the test awaits to know an attempt is durably recorded."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: asyncio.Queue[Attempt] = asyncio.Queue()

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        missing = await super().record_attempts(outcomes)
        for outcome in outcomes:
            self.recorded.put_nowait(outcome.attempt)
        return missing


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
async def store(tmp_path) -> AsyncIterator[RecordingStore]:
    s = RecordingStore(tmp_path / "outbox.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.hook)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    return rec


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def webhook(url: str, session: aiohttp.ClientSession, clock: ManualClock) -> WebhookChannel:
    cfg = WebhookChannelConfig.model_validate({"kind": "webhook", "url": url, "secret": SECRET})
    return WebhookChannel("partner", cfg, session=session, clock=clock)


async def serve(aiohttp_server, handler) -> str:
    """A one-off receiver with its own handler; returns its hook URL."""
    app = web.Application()
    app.router.add_post("/hook", handler)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook"))


@pytest.fixture
def channel(receiver, session, clock) -> WebhookChannel:
    return webhook(receiver.url, session, clock)


def worker_for(store, channel, clock, **kwargs) -> DeliveryWorker:
    return DeliveryWorker(
        store, {channel.name: channel}, clock=clock, policy=RetryPolicy(jitter=0.0), **kwargs
    )


async def enqueue(store, channel, *, resource_id: str = "wb-1", channel_name: str | None = None) -> Delivery:
    """Commit one event with one delivery, as the poller does."""
    key = ResourceKey(source="podero.wallbox", provider="podero", resource_id=resource_id)
    event = Event(
        id=event_id("charging-started", key, 1, T0),
        rule_id="charging-started",
        type="wallbox.charging_started",
        status="firing",
        severity="info",
        key=key,
        sequence=1,
        changes=(Change(field="is_charging", old=False, new=True),),
        state={"is_charging": True},
        occurred_at=T0,
    )
    name = channel_name or channel.name
    delivery = Delivery(
        id=delivery_id(event.id, name),
        event_id=event.id,
        channel=name,
        body=channel.render(event, RenderContext(old={"is_charging": False})),
        next_attempt_at=T0,
        created_at=T0,
    )
    snapshot = Snapshot(key=key, state=event.state, digest="d", sequence=1, updated_at=T0)
    await store.commit([PollResult(snapshot=snapshot, events=(event,), deliveries=(delivery,))])
    return delivery


def signed_at(headers: dict[str, str], body: bytes) -> datetime:
    """The signed timestamp, after checking the signature (time-window check aside: the clock is fake)."""
    when = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(SECRET).sign(headers["webhook-id"], when, body.decode())
    assert headers["webhook-signature"] == expected
    return when


async def test_a_failing_receiver_gets_four_attempts_at_the_scheduled_times(store, channel, receiver, clock):
    receiver.statuses = [500, 500, 500, 200]
    delivery = await enqueue(store, channel)
    worker = worker_for(store, channel, clock)

    made = [await worker.run_until_idle()]
    for wait in (timedelta(seconds=5), timedelta(minutes=5), timedelta(minutes=30)):
        clock.advance(wait - timedelta(seconds=1))
        made.append(await worker.run_until_idle())  # not due yet: nothing is sent early
        clock.advance(timedelta(seconds=1))
        made.append(await worker.run_until_idle())
    clock.advance(timedelta(hours=10))
    made.append(await worker.run_until_idle())

    assert made == [1, 0, 1, 0, 1, 0, 1, 0]
    assert [signed_at(h, b) for h, b in receiver.requests] == [
        T0,
        T0 + timedelta(seconds=5),
        T0 + timedelta(minutes=5, seconds=5),
        T0 + timedelta(minutes=35, seconds=5),
    ]
    assert {h["webhook-id"] for h, _ in receiver.requests} == {delivery.id}
    assert {b for _, b in receiver.requests} == {delivery.body}
    attempts = await store.list_attempts(delivery.id)
    assert [(a.number, a.ok, a.status_code) for a in attempts] == [
        (1, False, 500),
        (2, False, 500),
        (3, False, 500),
        (4, True, 200),
    ]
    final = await store.get_delivery(delivery.id)
    assert final is not None
    assert (final.status, final.attempts) == ("delivered", 4)


async def test_exhausting_the_schedule_ends_dead_and_replay_sends_again_with_the_same_id(
    store, channel, receiver, clock
):
    receiver.default = 503
    delivery = await enqueue(store, channel)
    worker = worker_for(store, channel, clock)

    attempts = 0
    for _ in range(12):  # more rounds than the schedule has attempts
        attempts += await worker.run_until_idle()
        clock.advance(timedelta(hours=10))

    dead = await store.get_delivery(delivery.id)
    assert dead is not None
    assert (attempts, dead.status, dead.attempts, dead.last_error) == (8, "dead", 8, "HTTP 503")

    receiver.default = 200
    assert await store.replay([delivery.id], clock.now()) == 1
    assert await worker.run_until_idle() == 1

    replayed = await store.get_delivery(delivery.id)
    assert replayed is not None
    assert replayed.status == "delivered"
    assert len(receiver.requests) == 9
    assert {h["webhook-id"] for h, _ in receiver.requests} == {delivery.id}
    assert receiver.requests[-1][1] == delivery.body


async def test_a_permanent_failure_is_dead_after_one_attempt(store, channel, receiver, clock):
    receiver.statuses = [422]
    delivery = await enqueue(store, channel)

    assert await worker_for(store, channel, clock).run_until_idle() == 1

    dead = await store.get_delivery(delivery.id)
    assert dead is not None
    assert (dead.status, dead.attempts) == ("dead", 1)


async def test_retry_after_from_the_receiver_sets_the_next_attempt(store, session, clock, aiohttp_server):
    async def limited(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "90"})

    limited_channel = webhook(await serve(aiohttp_server, limited), session, clock)
    delivery = await enqueue(store, limited_channel)

    await worker_for(store, limited_channel, clock).run_until_idle()

    pending = await store.get_delivery(delivery.id)
    assert pending is not None
    assert pending.next_attempt_at == T0 + timedelta(seconds=90)  # longer than the schedule's 5s


async def test_a_delivery_for_an_unconfigured_channel_stays_pending(store, channel, receiver, clock):
    orphan = await enqueue(store, channel, channel_name="removed-channel")
    worker = worker_for(store, channel, clock)

    assert await worker.run_until_idle() == 0
    clock.advance(timedelta(minutes=5))
    assert await worker.run_until_idle() == 0

    kept = await store.get_delivery(orphan.id)
    assert kept is not None
    assert (kept.status, kept.attempts) == ("pending", 0)
    assert await store.outbox_depth() == 1
    assert receiver.requests == []


async def test_the_run_loop_sends_on_notify_and_retries_when_the_clock_reaches_the_due_time(
    store, channel, receiver, clock
):
    receiver.statuses = [500]
    worker = worker_for(store, channel, clock)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run(stop))
    try:
        delivery = await enqueue(store, channel)
        worker.notify()
        first = await asyncio.wait_for(store.recorded.get(), 5)
        clock.advance(timedelta(seconds=5))  # the loop sleeps on the clock until the retry is due
        second = await asyncio.wait_for(store.recorded.get(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, 5)

    assert (first.ok, second.ok) == (False, True)
    assert second.at == T0 + timedelta(seconds=5)
    done = await store.get_delivery(delivery.id)
    assert done is not None
    assert done.status == "delivered"


async def test_stopping_the_loop_finishes_the_send_in_flight(store, channel, receiver, clock):
    receiver.hold = asyncio.Event()
    worker = worker_for(store, channel, clock)
    stop = asyncio.Event()
    delivery = await enqueue(store, channel)
    loop_task = asyncio.create_task(worker.run(stop))

    await asyncio.wait_for(receiver.arrived.get(), 5)  # the request is at the receiver, unanswered
    stop.set()
    receiver.hold.set()
    await asyncio.wait_for(loop_task, 5)

    done = await store.get_delivery(delivery.id)
    assert done is not None
    assert done.status == "delivered"
    assert [a.ok for a in await store.list_attempts(delivery.id)] == [True]


class GatedChannel:
    """An in-process channel whose sends wait for the test to open a gate: it shows what is in flight."""

    name = "partner"
    kind = "gated"

    def __init__(self) -> None:
        self.active = self.max_active = 0
        self.started: asyncio.Queue[str] = asyncio.Queue()
        self.gate = asyncio.Event()

    def render(self, event: Event, ctx: RenderContext) -> bytes:
        return event.id.encode()

    async def send(self, delivery: Delivery) -> SendResult:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self.started.put_nowait(delivery.id)
        await self.gate.wait()
        self.active -= 1
        return SendResult(ok=True, status_code=200)

    async def close(self) -> None:
        return None


async def test_sends_are_bounded_by_the_concurrency_limit(store, clock):
    total, limit = 5, 2
    gated = GatedChannel()
    for i in range(total):
        await enqueue(store, gated, resource_id=f"wb-{i}")
    burst = asyncio.create_task(worker_for(store, gated, clock, concurrency=limit).run_until_idle())

    for _ in range(limit):
        await asyncio.wait_for(gated.started.get(), 5)
    for _ in range(5):
        await asyncio.sleep(0)  # let any further send the worker had started reach the channel
    in_flight = gated.active
    gated.gate.set()
    made = await asyncio.wait_for(burst, 5)

    assert in_flight == limit
    assert gated.max_active == limit
    assert made == total
    assert await store.outbox_depth() == 0


async def test_run_until_idle_waits_for_a_send_the_running_loop_has_in_flight(
    store, channel, receiver, clock
):
    receiver.hold = asyncio.Event()
    worker = worker_for(store, channel, clock)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run(stop))
    try:
        delivery = await enqueue(store, channel)
        worker.notify()
        await asyncio.wait_for(receiver.arrived.get(), 5)  # the loop claimed it and is sending
        burst = asyncio.create_task(worker.run_until_idle())
        receiver.hold.set()
        made = await asyncio.wait_for(burst, 5)
        done = await store.get_delivery(delivery.id)
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, 5)

    assert made == 1
    assert done is not None
    assert done.status == "delivered"


async def test_a_send_still_in_flight_when_its_lease_runs_out_is_not_sent_twice_by_this_process(
    store, channel, receiver, clock, monkeypatch
):
    # The digest test's flake: the clock passes the claim lease (a jump on the ManualClock, an NTP
    # step or a send slower than the lease in production) while the send is in flight; the next pump
    # must not claim and send the same delivery again beside it.
    receiver.hold = asyncio.Event()
    claims: list[int] = []
    reclaimed = asyncio.Event()
    claim_due = store.claim_due

    async def counting_claim(*args, **kwargs):
        found = await claim_due(*args, **kwargs)
        claims.append(len(found))
        if len([n for n in claims if n]) == 2:
            reclaimed.set()
        return found

    monkeypatch.setattr(store, "claim_due", counting_claim)
    worker = worker_for(store, channel, clock, lease=timedelta(seconds=60))
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run(stop))
    try:
        delivery = await enqueue(store, channel)
        worker.notify()
        await asyncio.wait_for(receiver.arrived.get(), 5)  # claimed, and held at the receiver
        clock.advance(timedelta(seconds=61))  # the lease has run out on the clock
        burst = asyncio.create_task(worker.run_until_idle())
        await asyncio.wait_for(reclaimed.wait(), 5)  # the store handed it out again
        receiver.hold.set()
        await asyncio.wait_for(burst, 5)
        done = await store.get_delivery(delivery.id)
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, 5)

    assert len(receiver.requests) == 1
    assert done is not None
    assert done.status == "delivered"
    assert done.attempts == 1


async def test_a_store_error_does_not_stop_the_loop(tmp_path, channel, receiver, clock):
    class FlakyStore(RecordingStore):
        """Fails its first claim, as a database locked by another process would."""

        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.failed = asyncio.Event()

        async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[Delivery]:
            if not self.failed.is_set():
                self.failed.set()
                raise StoreError("database is locked")
            return await super().claim_due(now, limit=limit, lease=lease)

    store = FlakyStore(tmp_path / "flaky.db")
    await store.open()
    worker = worker_for(store, channel, clock)
    stop = asyncio.Event()
    delivery = await enqueue(store, channel)
    loop_task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.wait_for(store.failed.wait(), 5)
        worker.notify()  # new work also cuts the store back-off short
        attempt = await asyncio.wait_for(store.recorded.get(), 5)
    finally:
        stop.set()
        await asyncio.wait_for(loop_task, 5)
        await store.close()

    assert attempt.ok
    assert attempt.delivery_id == delivery.id


async def test_attempts_that_finish_together_are_recorded_in_one_transaction(tmp_path, clock):
    class CountingStore(RecordingStore):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.batches: list[int] = []

        async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
            self.batches.append(len(outcomes))
            return await super().record_attempts(outcomes)

    store = CountingStore(tmp_path / "group.db")
    await store.open()
    gated = GatedChannel()
    try:
        for i in range(5):
            await enqueue(store, gated, resource_id=f"wb-{i}")
        burst = asyncio.create_task(worker_for(store, gated, clock, concurrency=5).run_until_idle())
        for _ in range(5):
            await asyncio.wait_for(gated.started.get(), 5)
        gated.gate.set()  # all five answers arrive at once
        made = await asyncio.wait_for(burst, 5)
        delivered = await store.list_deliveries(status="delivered")
    finally:
        await store.close()

    assert made == 5
    assert store.batches == [5]
    assert len(delivered) == 5
