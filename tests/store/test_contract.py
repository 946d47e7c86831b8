"""The Store protocol's promises, stated once and run on every backend (SQLite and PostgreSQL):
one transaction per commit, idempotent ids, leases that expire, attempts recorded in a batch,
replay, keyset pages, watches, rule states, silences and digests."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.errors import CommitConflict, StoreError
from bridge.model import (
    Attempt,
    Delivery,
    PollResult,
    RuleState,
    Silence,
    Snapshot,
    Watch,
    delivery_id,
    event_id,
)
from bridge.shards import shard_of
from bridge.store.base import AttemptOutcome
from tests.store.factories import T0, key, pending, result


async def test_commit_stores_snapshot_event_and_deliveries_together(store):
    r = result()
    await store.commit([r])

    assert await store.get_snapshot(key()) == r.snapshot
    assert await store.get_event(r.events[0].id) == r.events[0]
    assert await store.get_delivery(r.deliveries[0].id) == r.deliveries[0]
    assert await store.get_snapshots("podero", "podero.wallbox") == {"wb-1": r.snapshot}
    assert await store.list_events() == [r.events[0]]


async def test_a_failing_result_rolls_back_the_whole_batch(store):
    good = result("wb-good")
    bad_delivery = Delivery(
        id="msg_orphan",
        event_id="evt_that_does_not_exist",  # violates the foreign key
        channel="partner",
        body=b"{}",
        next_attempt_at=T0,
        created_at=T0,
    )
    bad = PollResult(snapshot=result("wb-bad").snapshot, deliveries=(bad_delivery,))

    with pytest.raises(StoreError):
        await store.commit([good, bad])

    assert await store.get_snapshot(key("wb-good")) is None
    assert await store.get_event(good.events[0].id) is None
    assert await store.list_deliveries() == []
    # The store is still usable after the rollback.
    await store.commit([good])
    assert await store.get_snapshot(key("wb-good")) == good.snapshot


async def test_unserialisable_state_is_a_store_error_and_writes_nothing(store):
    bad = result("wb-bad", state={"not json": {1, 2}})

    with pytest.raises(StoreError, match="serialise"):
        await store.commit([result("wb-good"), bad])

    assert await store.get_snapshot(key("wb-good")) is None


async def test_recommitting_the_same_result_is_a_conflict_that_writes_nothing_twice(store):
    r = result(channels=("partner", "ops"))
    await store.commit([r])
    with pytest.raises(CommitConflict) as lost:
        await store.commit([r])  # the same write again: version 1 over version 1

    assert lost.value.keys == (key(),)
    assert len(await store.list_deliveries()) == 2
    assert len(await store.list_events()) == 1
    assert await store.outbox_depth() == 2


async def test_recommit_does_not_reset_a_delivery_already_sent(store):
    r = result()
    await store.commit([r])
    [d] = await store.claim_due(T0, limit=10, lease=timedelta(seconds=60))
    await store.record_attempt(
        Attempt(delivery_id=d.id, number=1, at=T0, ok=True), status="delivered", next_attempt_at=None
    )

    with pytest.raises(CommitConflict):
        await store.commit([r])

    again = await store.get_delivery(d.id)
    assert again is not None
    assert again.status == "delivered"


async def test_two_writers_of_one_version_one_wins_and_the_loser_writes_nothing_at_all(store):
    await store.commit([result(sequence=1)])
    # Two replicas read version 1 and each saw the next transition (different instants, so
    # different event ids): only the first commit lands; the loser's whole transaction rolls back.
    mine = result(sequence=2, at=T0 + timedelta(seconds=1))
    theirs = result(sequence=2, at=T0 + timedelta(seconds=2), channels=("ops",))
    other = result("wb-2", sequence=1)
    await store.commit([theirs])
    with pytest.raises(CommitConflict) as lost:
        await store.commit([mine, other])

    assert lost.value.keys == (key(),)
    assert await store.get_snapshot(key("wb-2")) is None  # rolled back with the loser
    assert [e.id for e in await store.list_events()] == [theirs.events[0].id, result().events[0].id]
    assert await store.get_event(mine.events[0].id) is None
    await store.commit([other])  # the others go through without it
    assert (await store.get_snapshot(key("wb-2"))) == other.snapshot


async def test_a_snapshot_write_lands_only_on_the_version_before_it(store):
    await store.commit([result(sequence=1)])
    with pytest.raises(CommitConflict):
        await store.commit([result(sequence=3, version=3)])  # skipped version 2: someone else's
    stored = await store.get_snapshot(key())
    assert stored is not None
    assert stored.version == 1
    await store.commit([result(sequence=2, version=2)])
    stored = await store.get_snapshot(key())
    assert stored is not None
    assert (stored.version, stored.sequence) == (2, 2)


async def test_one_transition_is_recorded_once_even_past_the_snapshot_check(store):
    # The events' unique key (rule, resource, sequence) is the schema's own guard: a second event
    # for transition 1 is refused however its snapshot was written.
    await store.commit([result(sequence=1)])
    twin = result(sequence=1, at=T0 + timedelta(seconds=5), version=2)
    with pytest.raises(CommitConflict) as lost:
        await store.commit([twin])

    assert lost.value.keys == (key(),)
    assert len(await store.list_events()) == 1
    stored = await store.get_snapshot(key())
    assert stored is not None
    assert stored.version == 1


async def test_concurrent_writers_of_one_transition_commit_exactly_one(store):
    await store.commit([result(sequence=1)])
    racers = [result(sequence=2, at=T0 + timedelta(seconds=i + 1)) for i in range(4)]
    outcomes = await asyncio.gather(*(store.commit([r]) for r in racers), return_exceptions=True)

    assert sum(o is None for o in outcomes) == 1
    assert all(isinstance(o, CommitConflict) for o in outcomes if o is not None)
    assert len(await store.list_events()) == 2


async def test_snapshot_upsert_keeps_one_row_per_resource_with_the_latest_state(store):
    await store.commit([result(sequence=1)])
    later = result(sequence=2, at=T0 + timedelta(minutes=1), state={"is_charging": False})
    await store.commit([later])

    snap = await store.get_snapshot(key())
    assert snap == later.snapshot
    assert len(await store.get_snapshots("podero", "podero.wallbox")) == 1


async def test_a_disappeared_snapshot_keeps_a_null_state(store):
    gone = Snapshot(key=key(), state=None, digest="gone", sequence=3, updated_at=T0)
    await store.commit([PollResult(snapshot=gone)])

    assert await store.get_snapshot(key()) == gone


async def test_claim_due_leases_deliveries_so_a_second_claim_gets_nothing(store):
    await store.commit([result("a", at=T0), result("b", at=T0 + timedelta(seconds=1))])

    claimed = await store.claim_due(T0 + timedelta(seconds=1), limit=10, lease=timedelta(seconds=60))
    assert [d.id for d in claimed] == [
        delivery_id(event_id("charging-started", key("a"), 1, T0), "partner"),
        delivery_id(event_id("charging-started", key("b"), 1, T0 + timedelta(seconds=1)), "partner"),
    ]
    assert await store.claim_due(T0 + timedelta(seconds=30), limit=10, lease=timedelta(seconds=60)) == []
    assert await store.next_due_at() == T0 + timedelta(seconds=61)
    # The lease expires: a crashed worker's claim comes back.
    again = await store.claim_due(T0 + timedelta(seconds=61), limit=10, lease=timedelta(seconds=60))
    assert len(again) == 2


async def test_claim_due_skips_future_work_and_respects_the_limit(store):
    await store.commit([result("a"), result("b"), result("later", at=T0 + timedelta(hours=1))])

    first = await store.claim_due(T0, limit=1, lease=timedelta(seconds=60))
    second = await store.claim_due(T0, limit=5, lease=timedelta(seconds=60))

    assert len(first) == 1
    assert len(second) == 1
    assert first[0].id != second[0].id
    assert await store.outbox_depth() == 3


async def test_defer_puts_claimed_deliveries_back_due_at_their_turn_without_an_attempt(store):
    await store.commit([result("a"), result("b"), result("c")])
    a, b, c = await store.claim_due(T0, limit=10, lease=timedelta(seconds=60))
    ok = Attempt(delivery_id=c.id, number=1, at=T0, ok=True, status_code=204)
    await store.record_attempt(ok, status="delivered", next_attempt_at=None)

    await store.defer([(a.id, T0 + timedelta(seconds=1)), (b.id, T0 + timedelta(seconds=2)),
                       (c.id, T0 + timedelta(seconds=3))])  # fmt: skip

    assert await store.next_due_at() == T0 + timedelta(seconds=1)
    assert [
        d.id for d in await store.claim_due(T0 + timedelta(seconds=1), limit=10, lease=timedelta(seconds=60))
    ] == [a.id]
    later = await store.get_delivery(b.id)
    assert later is not None
    assert (later.status, later.attempts, later.next_attempt_at) == ("pending", 0, T0 + timedelta(seconds=2))
    done = await store.get_delivery(c.id)
    assert done is not None
    assert done.status == "delivered"  # a delivered one is not made pending again
    assert await store.list_attempts(b.id) == []


async def test_record_attempt_moves_the_delivery_and_keeps_the_attempt(store):
    r = result()
    await store.commit([r])
    [d] = await store.claim_due(T0, limit=10, lease=timedelta(seconds=60))
    retry_at = T0 + timedelta(seconds=5)
    failed = Attempt(
        delivery_id=d.id,
        number=1,
        at=T0,
        ok=False,
        status_code=503,
        latency_ms=12.5,
        error="HTTP 503",
        response_excerpt="busy",
    )

    await store.record_attempt(failed, status="pending", next_attempt_at=retry_at)

    after = await store.get_delivery(d.id)
    assert after is not None
    assert (after.status, after.attempts, after.next_attempt_at, after.last_error) == (
        "pending",
        1,
        retry_at,
        "HTTP 503",
    )
    assert await store.list_attempts(d.id) == [failed]

    ok = Attempt(delivery_id=d.id, number=2, at=retry_at, ok=True, status_code=204)
    await store.record_attempt(ok, status="delivered", next_attempt_at=None)
    done = await store.get_delivery(d.id)
    assert done is not None
    assert (done.status, done.attempts, done.last_error) == ("delivered", 2, None)
    assert await store.list_attempts(d.id) == [failed, ok]
    assert await store.outbox_depth() == 0
    assert await store.next_due_at() is None


async def test_record_attempt_for_an_unknown_delivery_is_a_store_error(store):
    with pytest.raises(StoreError):
        await store.record_attempt(
            Attempt(delivery_id="msg_nope", number=1, at=T0, ok=True),
            status="delivered",
            next_attempt_at=None,
        )


async def test_a_batch_of_attempts_with_one_unknown_delivery_records_the_others_and_names_it(store):
    known = [result("wb-1"), result("wb-2")]
    await store.commit(known)
    claimed = await store.claim_due(T0, limit=10, lease=timedelta(seconds=60))
    attempts = [Attempt(delivery_id=d.id, number=1, at=T0, ok=True, status_code=204) for d in claimed]
    ghost = Attempt(delivery_id="msg_nope", number=1, at=T0, ok=True, status_code=204)
    outcomes = [AttemptOutcome(attempt=a, status="delivered", next_attempt_at=None) for a in attempts]
    ghost_outcome = AttemptOutcome(attempt=ghost, status="delivered", next_attempt_at=None)

    recorded = await store.record_attempts([outcomes[0], ghost_outcome, outcomes[1]])

    assert recorded.missing == {"msg_nope"}
    assert recorded.refused == frozenset()
    for a in attempts:
        assert await store.list_attempts(a.delivery_id) == [a]
        done = await store.get_delivery(a.delivery_id)
        assert done is not None
        assert (done.status, done.attempts) == ("delivered", 1)
    assert await store.list_attempts("msg_nope") == []


async def test_replay_makes_dead_and_delivered_pending_again_with_the_same_id_and_body(store):
    r = result(channels=("partner", "ops"))
    await store.commit([r])
    partner, ops = r.deliveries
    for d, status in ((partner, "dead"), (ops, "delivered")):
        await store.record_attempt(
            Attempt(delivery_id=d.id, number=1, at=T0, ok=status == "delivered", error="x"),
            status=status,
            next_attempt_at=None,
        )
    later = T0 + timedelta(days=2)

    assert await store.replay([partner.id, ops.id, "msg_unknown"], later) == 2

    for original in (partner, ops):
        replayed = await store.get_delivery(original.id)
        assert replayed is not None
        assert (replayed.status, replayed.attempts, replayed.next_attempt_at) == ("pending", 0, later)
        assert replayed.body == original.body
        assert len(await store.list_attempts(original.id)) == 1  # history kept
    assert await store.replay([partner.id], later) == 0  # already pending: nothing to do


async def test_list_deliveries_filters_by_status_and_channel(store):
    await store.commit([result("a", channels=("partner", "ops")), result("b", channels=("partner",))])
    [first, *_] = await store.claim_due(T0, limit=1, lease=timedelta(seconds=60))
    await store.record_attempt(
        Attempt(delivery_id=first.id, number=1, at=T0, ok=True), status="delivered", next_attempt_at=None
    )

    assert len(await store.list_deliveries()) == 3
    assert len(await store.list_deliveries(channel="partner")) == 2
    assert [d.id for d in await store.list_deliveries(status="delivered")] == [first.id]
    assert len(await store.list_deliveries(status="pending", limit=1)) == 1


async def test_oldest_pending_at_reports_how_far_behind_the_outbox_is(store):
    assert await store.oldest_pending_at() is None
    await store.commit([result("a", at=T0 + timedelta(minutes=5)), result("b", at=T0)])

    assert await store.oldest_pending_at() == T0
    assert (await store.oldest_pending_at()).tzinfo is not None


async def test_a_closed_store_raises_store_error(store):
    await store.ping()
    await store.close()

    with pytest.raises(StoreError, match="not open"):
        await store.ping()


async def test_concurrent_commits_and_claims_do_not_interleave_their_transactions(store):
    commits = [store.commit([result(f"wb-{i}")]) for i in range(20)]
    claims = [store.claim_due(T0, limit=3, lease=timedelta(seconds=60)) for _ in range(5)]

    outcomes = await asyncio.gather(*commits, *claims)

    claimed = [d.id for batch in outcomes[20:] for d in batch]
    assert len(claimed) == len(set(claimed))  # never the same delivery twice
    assert await store.outbox_depth() == 20


async def test_an_idle_state_without_cooldown_memory_is_deleted_and_one_with_it_is_kept(store):
    await store.commit([replace(result("wb-1"), rule_states=(pending("wb-1"), pending("wb-2")))])
    idle = RuleState(rule_id="action-needed", key=key("wb-1"), phase="idle", since=T0)
    cooling = replace(idle, key=key("wb-2"), last_fired_at=T0)
    await store.commit([replace(result("wb-1", sequence=2), rule_states=(idle, cooling))])

    assert await store.list_rule_states() == [cooling]


async def test_silences_are_listed_while_active_and_expire_on_request(store):
    silence = Silence(
        id="sil_1",
        rule="action-*",
        resource="wb-1",
        starts_at=T0,
        ends_at=T0 + timedelta(hours=2),
        comment="maintenance",
        created_by="ops",
        created_at=T0,
    )
    await store.add_silence(silence)

    assert await store.list_silences(active_after=T0 + timedelta(hours=1)) == [silence]
    assert await store.expire_silence("sil_1", T0 + timedelta(hours=1)) is True
    assert await store.expire_silence("sil_1", T0 + timedelta(hours=1, minutes=1)) is False
    assert await store.list_silences(active_after=T0 + timedelta(hours=1)) == []
    expired = await store.get_silence("sil_1")
    assert expired is not None
    assert expired.ends_at == T0 + timedelta(hours=1)


async def test_a_suppressed_delivery_is_kept_and_can_be_replayed(store):
    r = result()
    [d] = r.deliveries
    await store.commit([replace(r, deliveries=(replace(d, status="suppressed"),))])

    assert await store.outbox_depth() == 0
    assert [x.id for x in await store.list_deliveries(status="suppressed")] == [d.id]
    assert await store.replay([d.id], T0) == 1
    assert await store.outbox_depth() == 1


async def test_a_lease_is_one_holders_until_it_expires_and_the_next_holder_gets_a_greater_token(store):
    period = timedelta(seconds=30)
    first = await store.acquire_lease("poll:podero:wallboxes", "r1", T0, period)
    assert first is not None
    assert (
        await store.acquire_lease("poll:podero:wallboxes", "r2", T0 + timedelta(seconds=29), period) is None
    )
    # The holder renews without a new token; another name is free.
    assert (
        await store.acquire_lease("poll:podero:wallboxes", "r1", T0 + timedelta(seconds=10), period) == first
    )
    assert await store.acquire_lease("poll:podero:devices", "r2", T0, period) is not None
    # r1 stops heart-beating: 30 s after its last renewal the lease is r2's, fenced by a new token.
    later = T0 + timedelta(seconds=40)
    taken = await store.acquire_lease("poll:podero:wallboxes", "r2", later, period)
    assert taken is not None
    assert taken > first
    assert await store.held_leases("r1", later) == []
    # (r2's lease on devices, taken at T0 and never renewed, has run out by then)
    assert await store.held_leases("r2", later) == ["poll:podero:wallboxes"]


async def test_heartbeats_keep_leases_and_a_release_frees_them_at_once(store):
    period = timedelta(seconds=30)
    for name in ("poll:a:x", "poll:a:y"):
        assert await store.acquire_lease(name, "r1", T0, period) is not None
    assert await store.renew_leases("r1", T0 + timedelta(seconds=20), period) == 2
    # Renewed at +20 s: still r1's at +45 s.
    assert await store.acquire_lease("poll:a:x", "r2", T0 + timedelta(seconds=45), period) is None
    assert await store.held_leases("r1", T0 + timedelta(seconds=45)) == ["poll:a:x", "poll:a:y"]
    await store.release_leases("r1", ["poll:a:x"])
    assert await store.acquire_lease("poll:a:x", "r2", T0 + timedelta(seconds=46), period) is not None
    assert await store.held_leases("r1", T0 + timedelta(seconds=46)) == ["poll:a:y"]


async def test_lease_holders_lists_the_live_leases_under_a_prefix_with_their_holders(store):
    period = timedelta(seconds=30)
    await store.acquire_lease("member:podero:r2", "r2", T0, period)
    await store.acquire_lease("member:podero:r1", "r1", T0 + timedelta(seconds=10), period)
    await store.acquire_lease("member:realto:r1", "r1", T0, period)
    await store.acquire_lease("poll:podero:wallboxes", "r1", T0, period)

    assert await store.lease_holders("member:podero:", T0 + timedelta(seconds=20)) == [
        ("member:podero:r1", "r1", T0 + timedelta(seconds=40)),
        ("member:podero:r2", "r2", T0 + timedelta(seconds=30)),
    ]
    # r2 stopped heart-beating: 30 s later it is no longer a member; the prefix is literal text.
    assert await store.lease_holders("member:podero:", T0 + timedelta(seconds=35)) == [
        ("member:podero:r1", "r1", T0 + timedelta(seconds=40))
    ]
    assert await store.lease_holders("member:%", T0) == []


async def test_a_page_of_one_shard_holds_exactly_the_watches_whose_id_hashes_to_it(store):
    ids = [f"wb-{i:03d}" for i in range(60)]
    for rid in ids:
        await store.add_watch(Watch(key=key(rid), params={}, created_at=T0))
    shards = 4
    seen: list[str] = []
    for k in range(shards):
        after, mine = None, []
        while page := await store.list_watches_page(
            "podero", source="podero.wallbox", after=after, limit=7, shard=(k, shards)
        ):
            mine += [w.key.resource_id for w in page]
            after = (page[-1].key.source, page[-1].key.resource_id)
        # The database's hash (SQL on PostgreSQL) is the one every replica computes in Python.
        assert mine == [rid for rid in ids if shard_of(rid, shards) == k]
        seen += mine
    assert sorted(seen) == ids  # every watch in exactly one shard
    assert all(0 < sum(shard_of(r, shards) == k for r in ids) < 30 for k in range(shards))
