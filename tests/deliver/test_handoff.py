"""Fresh deliveries go from the commit to the sender without a claim; the row stays the truth."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from standardwebhooks import Webhook

from bridge.model import Delivery, PollResult
from tests.deliver.test_worker import SECRET, T0, enqueue, worker_for

pytest_plugins = ["tests.deliver.test_worker"]


async def poll_result(channel, resource_id: str) -> PollResult:
    captured: list[PollResult] = []

    class Capture:
        async def commit(self, results) -> None:
            captured.extend(results)

    await enqueue(Capture(), channel, resource_id=resource_id)
    return captured[0]


def counting_claims(store, monkeypatch) -> list[int]:
    claims: list[int] = []
    claim_due = store.claim_due

    async def counted(*args, **kwargs) -> list[Delivery]:
        found = await claim_due(*args, **kwargs)
        claims.append(len(found))
        return found

    monkeypatch.setattr(store, "claim_due", counted)
    return claims


async def test_a_committed_fresh_delivery_is_sent_without_a_claim(
    store, channel, receiver, clock, monkeypatch
):
    claims = counting_claims(store, monkeypatch)
    worker = worker_for(store, channel, clock)
    result = await poll_result(channel, "wb-1")
    lease = worker.lease_fresh([result])
    leased = lease.results[0].deliveries[0]
    assert leased.next_attempt_at == T0 + timedelta(seconds=60)  # written leased: no claim can take it

    await store.commit(lease.results)
    worker.hand_over(lease, lease.results)
    assert await worker.run_until_idle() == 1

    assert [n for n in claims if n] == []  # claims ran (run_until_idle asks) but found nothing
    headers, body = receiver.requests[0]
    assert headers["webhook-id"] == leased.id
    assert body == result.deliveries[0].body
    done = await store.get_delivery(leased.id)
    assert done is not None
    assert (done.status, done.attempts) == ("delivered", 1)


async def test_a_crash_after_the_commit_sends_it_after_the_lease_with_the_same_id_and_bytes(
    store, channel, receiver, clock
):
    result = await poll_result(channel, "wb-1")
    crashed = worker_for(store, channel, clock)
    lease = crashed.lease_fresh([result])
    await store.commit(lease.results)  # ... and the process dies before `hand_over`

    restarted = worker_for(store, channel, clock)
    assert await restarted.run_until_idle() == 0  # still leased: not sent twice in the meantime
    clock.advance(timedelta(seconds=60))
    assert await restarted.run_until_idle() == 1

    headers, body = receiver.requests[0]
    assert headers["webhook-id"] == result.deliveries[0].id
    assert body == result.deliveries[0].body
    when = headers["webhook-timestamp"]
    assert headers["webhook-signature"] == Webhook(SECRET).sign(
        headers["webhook-id"], clock.now().fromtimestamp(int(when), tz=T0.tzinfo), body.decode()
    )


async def test_a_commit_that_failed_hands_nothing_over(store, channel, receiver, clock):
    worker = worker_for(store, channel, clock)
    result = await poll_result(channel, "wb-1")
    lease = worker.lease_fresh([result])
    worker.hand_over(lease, [])  # the commit raised: nothing was written

    assert await worker.run_until_idle() == 0
    assert receiver.requests == []
    again = worker.lease_fresh([result])  # its room is given back
    assert len(again.leased) == 1


async def test_the_hand_over_is_bounded_and_the_rest_is_claimed(store, channel, receiver, clock, monkeypatch):
    claims = counting_claims(store, monkeypatch)
    worker = worker_for(store, channel, clock, concurrency=2)  # room for 2 x 2 handed over
    results = [await poll_result(channel, f"wb-{i}") for i in range(7)]
    lease = worker.lease_fresh(results)
    assert len(lease.leased) == 4
    assert [r.deliveries[0].next_attempt_at for r in lease.results].count(T0) == 3  # due: claimable

    await store.commit(lease.results)
    worker.hand_over(lease, lease.results)
    assert await worker.run_until_idle() == 7

    assert sum(claims) == 3
    assert sorted(h["webhook-id"] for h, _ in receiver.requests) == sorted(
        r.deliveries[0].id for r in results
    )


async def test_the_run_loop_sends_a_hand_over_and_stopping_frees_what_it_had_not_started(
    store, channel, receiver, clock, monkeypatch
):
    claims = counting_claims(store, monkeypatch)
    receiver.hold = asyncio.Event()
    worker = worker_for(store, channel, clock, concurrency=1)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run(stop))
    try:
        await asyncio.sleep(0)
        results = [await poll_result(channel, f"wb-{i}") for i in range(2)]
        lease = worker.lease_fresh(results)
        await store.commit(lease.results)
        worker.hand_over(lease, lease.results)
        await asyncio.wait_for(receiver.arrived.get(), 5)  # the first is at the receiver
        assert [n for n in claims if n] == []
    finally:
        stop.set()
        receiver.hold.set()
        await asyncio.wait_for(loop_task, 5)

    first, second = [await store.get_delivery(r.deliveries[0].id) for r in results]
    assert first is not None
    assert first.status == "delivered"
    assert second is not None
    assert (second.status, second.next_attempt_at) == ("pending", T0)  # due at once for the next run
    assert await worker_for(store, channel, clock).run_until_idle() == 1
