"""Fenced writes, on both stores (the contract suite's `store` fixture): a delivery's record lands
only under its current claim, and a write made under a lease only while that lease is the writer's.

The story of each test: worker (or replica) A claims, pauses past its claim or lease, B claims
or takes the lease over, and A comes back with its late write: refused, and B's record stands."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.errors import FencedOut
from bridge.model import Attempt, Delivery, DeliveryStatus
from bridge.notify.batches import build_digest
from bridge.store.base import AttemptOutcome, Fence, HeldGroup, Recorded
from tests.store.factories import T0, key, pending, result

LEASE = timedelta(seconds=60)


def outcome(
    d: Delivery,
    *,
    ok: bool,
    at_s: int,
    status: DeliveryStatus | None = None,
    fallback: Delivery | None = None,
) -> AttemptOutcome:
    attempt = Attempt(
        delivery_id=d.id,
        number=d.attempts + 1,
        at=T0 + timedelta(seconds=at_s),
        ok=ok,
        status_code=204 if ok else 503,
        error=None if ok else "HTTP 503",
    )
    return AttemptOutcome(
        attempt=attempt,
        status=status or ("delivered" if ok else "pending"),
        next_attempt_at=None if ok else T0 + timedelta(seconds=at_s + 30),
        claim_token=d.claim_token,
        fallback=fallback,
    )


async def test_a_late_record_of_an_expired_claim_is_refused_and_the_new_claimers_lands(store):
    await store.commit([result("wb-1")])
    [a] = await store.claim_due(T0, limit=10, lease=LEASE)
    # A pauses past its claim; B claims the same delivery, with a greater token, and sends it.
    [b] = await store.claim_due(T0 + LEASE + timedelta(seconds=1), limit=10, lease=LEASE)
    assert (a.id, b.id) == (b.id, a.id)
    assert b.claim_token > a.claim_token

    b_record = outcome(b, ok=True, at_s=62)
    assert await store.record_attempts([b_record]) == Recorded()
    # A wakes up and records its (failed) attempt: refused, B's delivered record stands.
    late = await store.record_attempts([outcome(a, ok=False, at_s=90)])

    assert late.refused == {a.id}
    assert late.missing == frozenset()
    done = await store.get_delivery(a.id)
    assert done is not None
    assert (done.status, done.attempts, done.last_error) == ("delivered", 1, None)
    assert await store.list_attempts(a.id) == [b_record.attempt]


async def test_a_late_record_refused_in_a_batch_leaves_the_others_recorded(store):
    await store.commit([result("wb-1"), result("wb-2")])
    first = await store.claim_due(T0, limit=10, lease=LEASE)
    by_id = {d.id: d for d in first}
    # Only wb-1's delivery is claimed again (by B): wb-2's claim is still A's.
    await store.defer([(first[0].id, T0)], tokens={first[0].id: first[0].claim_token})
    [b] = await store.claim_due(T0, limit=1, lease=LEASE)
    assert b.id == first[0].id

    late = await store.record_attempts([outcome(d, ok=True, at_s=5) for d in by_id.values()])

    assert late.refused == {first[0].id}
    assert [a.ok for a in await store.list_attempts(first[1].id)] == [True]
    assert await store.list_attempts(first[0].id) == []
    still = await store.get_delivery(first[0].id)
    assert still is not None
    assert still.status == "pending"


async def test_a_late_dead_record_queues_no_fallback_copy(store):
    plain = result("wb-1", channels=("partner",))
    await store.commit([plain])
    [a] = await store.claim_due(T0, limit=10, lease=LEASE)
    [b] = await store.claim_due(T0 + LEASE, limit=10, lease=LEASE)
    copy = Delivery(
        id="msg_fallback",
        event_id=a.event_id,
        channel="ops",
        body=b"{}",
        next_attempt_at=T0,
        created_at=T0,
    )

    late = await store.record_attempts([outcome(a, ok=False, at_s=70, status="dead", fallback=copy)])

    assert late.refused == {a.id}
    assert await store.get_delivery("msg_fallback") is None
    current = await store.get_delivery(b.id)
    assert current is not None
    assert current.status == "pending"


async def test_a_late_deferral_does_not_move_the_new_claimers_lease(store):
    await store.commit([result("wb-1")])
    [a] = await store.claim_due(T0, limit=10, lease=LEASE)
    [b] = await store.claim_due(T0 + LEASE, limit=10, lease=LEASE)

    # A's rate limit says "in an hour": refused, so B's lease (and nobody else's claim) decides.
    await store.defer([(a.id, T0 + timedelta(hours=1))], tokens={a.id: a.claim_token})

    assert await store.next_due_at() == b.next_attempt_at
    await store.defer([(b.id, T0 + timedelta(hours=1))], tokens={b.id: b.claim_token})
    assert await store.next_due_at() == T0 + timedelta(hours=1)


async def test_an_attempt_recorded_without_a_claim_token_is_not_fenced(store):
    """Tools that record by hand (no claim) keep working: no token, no fence."""
    await store.commit([result("wb-1")])
    [d] = await store.claim_due(T0, limit=10, lease=LEASE)
    attempt = Attempt(delivery_id=d.id, number=1, at=T0, ok=True, status_code=204)
    await store.record_attempt(attempt, status="delivered", next_attempt_at=None)
    done = await store.get_delivery(d.id)
    assert done is not None
    assert done.status == "delivered"


async def test_a_commit_fenced_by_a_lease_taken_over_is_refused_whole(store):
    period = timedelta(seconds=30)
    token_a = await store.acquire_lease("timers", "replica-a", T0, period)
    assert token_a is not None
    fence_a = Fence("timers", "replica-a", token_a)
    await store.commit([result("wb-1", sequence=1)], fence=fence_a)  # A holds it: lands
    # A pauses; its lease runs out and B takes it over (a greater token).
    later = T0 + period + timedelta(seconds=1)
    token_b = await store.acquire_lease("timers", "replica-b", later, period)
    assert token_b is not None
    assert token_b > token_a

    with pytest.raises(FencedOut):
        await store.commit([result("wb-1", sequence=2, state={"is_charging": False})], fence=fence_a)

    snap = await store.get_snapshot(key("wb-1"))
    assert snap is not None
    assert snap.sequence == 1
    assert len(await store.list_events()) == 1
    await store.commit([result("wb-1", sequence=2)], fence=Fence("timers", "replica-b", token_b))
    snap = await store.get_snapshot(key("wb-1"))
    assert snap is not None
    assert snap.sequence == 2


async def test_a_released_lease_is_retaken_with_a_greater_token_so_an_old_fence_stays_refused(store):
    period = timedelta(seconds=30)
    first = await store.acquire_lease("timers", "replica-a", T0, period)
    assert first is not None
    later = T0 + period + timedelta(seconds=1)
    second = await store.acquire_lease("timers", "replica-b", later, period)
    await store.release_leases("replica-b", ["timers"])  # a clean stop
    third = await store.acquire_lease("timers", "replica-c", later, period)

    assert second is not None
    assert third is not None
    assert first < second < third  # never 1 again: replica-a's old token cannot pass the fence
    assert await store.held_leases("replica-b", later) == []
    with pytest.raises(FencedOut):
        await store.commit([result("wb-1")], fence=Fence("timers", "replica-a", first))


async def test_digest_and_held_settlement_are_fenced_too(store):
    period = timedelta(seconds=30)
    token = await store.acquire_lease("timers", "replica-a", T0, period)
    assert token is not None
    stale = Fence("timers", "replica-a", token)
    await store.acquire_lease("timers", "replica-b", T0 + period, period)
    r = result("wb-1")
    held = Delivery(
        id="msg_held",
        event_id=r.events[0].id,
        channel="ops",
        body=b'{"subject": "s", "text": "t", "to": []}',
        status="held",
        next_attempt_at=T0,
        created_at=T0,
        group_key="rule=charging-started",
    )
    await store.commit([r])
    await store.commit([replace(result("wb-3"), deliveries=(held,))])
    group = HeldGroup(
        channel="ops", group_key="rule=charging-started", first_at=T0, count=1, last_digest_at=None
    )
    event, digest = build_digest(group, [held], T0 + period)

    with pytest.raises(FencedOut):
        await store.commit_digest(event, digest, [held.id], fence=stale)
    with pytest.raises(FencedOut):
        await store.settle_held(release=[held.id], drop=(), now=T0 + period, fence=stale)

    assert [d.id for d in await store.list_held("ops", "rule=charging-started")] == [held.id]
    assert await store.get_delivery(digest.id) is None


async def test_rule_states_committed_by_a_fenced_out_tick_are_not_written(store):
    period = timedelta(seconds=30)
    token = await store.acquire_lease("timers", "replica-a", T0, period)
    assert token is not None
    await store.acquire_lease("timers", "replica-b", T0 + period, period)

    with pytest.raises(FencedOut):
        await store.commit(
            [replace(result("wb-1"), rule_states=(pending("wb-1"),))],
            fence=Fence("timers", "replica-a", token),
        )
    assert await store.list_rule_states() == []
