"""The SQLite store honours the Store contract: atomic idempotent commits, leases, attempts, replay."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

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
from bridge.store.base import AttemptOutcome
from bridge.store.sqlite import SqliteStore
from bridge.store.sqlite_api_sql import Q_LAST_FIRINGS

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def key(resource_id: str = "wb-1") -> ResourceKey:
    return ResourceKey(source="podero.wallbox", provider="podero", resource_id=resource_id)


def result(
    resource_id: str = "wb-1",
    *,
    sequence: int = 1,
    channels: tuple[str, ...] = ("partner",),
    at: datetime = T0,
    state: dict[str, object] | None = None,
) -> PollResult:
    k = key(resource_id)
    state = {"is_charging": True, "power": 7.4} if state is None else state
    evt = Event(
        id=event_id("charging-started", k, sequence, at),
        rule_id="charging-started",
        type="wallbox.charging_started",
        status="firing",
        severity="info",
        key=k,
        sequence=sequence,
        changes=(Change(field="is_charging", old=False, new=True),),
        state=state,
        occurred_at=at,
    )
    deliveries = tuple(
        Delivery(
            id=delivery_id(evt.id, ch),
            event_id=evt.id,
            channel=ch,
            body=f'{{"event":"{evt.id}","channel":"{ch}"}}'.encode(),
            next_attempt_at=at,
            created_at=at,
        )
        for ch in channels
    )
    snap = Snapshot(key=k, state=state, digest=f"d{sequence}", sequence=sequence, updated_at=at)
    return PollResult(snapshot=snap, events=(evt,), deliveries=deliveries)


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(tmp_path / "bridge.db")
    await s.open()
    yield s
    await s.close()


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


async def test_recommitting_the_same_ids_is_idempotent(store):
    r = result(channels=("partner", "ops"))
    await store.commit([r])
    await store.commit([r])

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

    await store.commit([r])

    again = await store.get_delivery(d.id)
    assert again is not None
    assert again.status == "delivered"


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

    missing = await store.record_attempts([outcomes[0], ghost_outcome, outcomes[1]])

    assert missing == {"msg_nope"}
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


async def test_last_firings_are_each_rules_newest_firing_found_by_an_index_seek(store, tmp_path):
    later = result("wb-2", sequence=2, at=T0 + timedelta(hours=1))
    resolved = result("wb-3", sequence=3, at=T0 + timedelta(hours=2))
    resolved = replace(resolved, events=(replace(resolved.events[0], status="resolved"),))
    await store.commit([result("wb-1", at=T0), later, resolved])

    fired = await store.last_firings(["charging-started", "never-fired"])

    # A resolved event is not a firing; a rule that never fired is left out.
    assert fired == {"charging-started": T0 + timedelta(hours=1)}
    with sqlite3.connect(tmp_path / "bridge.db") as db:
        plan = db.execute(f"EXPLAIN QUERY PLAN {Q_LAST_FIRINGS}", ('["charging-started"]',)).fetchall()
    db.close()
    assert any("USING INDEX events_firing_by_rule (rule_id=?)" in step[3] for step in plan)


async def test_a_v4_store_gains_the_last_firing_index_when_opened(tmp_path):
    path = tmp_path / "v4.db"
    s = SqliteStore(path)
    await s.open()
    await s.commit([result("wb-1", at=T0)])
    await s.close()
    with sqlite3.connect(path) as db:
        db.execute("DROP INDEX events_firing_by_rule")
        db.execute("PRAGMA user_version = 4")
    db.close()

    upgraded = SqliteStore(path)
    await upgraded.open()
    try:
        assert await upgraded.last_firings(["charging-started"]) == {"charging-started": T0}
    finally:
        await upgraded.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 5
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_firing_by_rule'").fetchone()
    db.close()


async def test_reopening_the_file_finds_everything_committed(tmp_path):
    path = tmp_path / "durable.db"
    first = SqliteStore(path)
    await first.open()
    r = result()
    await first.commit([r])
    await first.close()

    second = SqliteStore(str(path), synchronous="NORMAL")
    await second.open()
    try:
        assert await second.get_snapshot(key()) == r.snapshot
        assert await second.get_event(r.events[0].id) == r.events[0]
        assert await second.get_delivery(r.deliveries[0].id) == r.deliveries[0]
        await second.ping()
    finally:
        await second.close()


async def test_a_closed_store_raises_store_error(tmp_path):
    s = SqliteStore(tmp_path / "x.db")
    await s.open()
    await s.close()

    with pytest.raises(StoreError, match="not open"):
        await s.ping()


async def test_an_unopenable_path_is_a_store_error(tmp_path):
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteStore(tmp_path / "missing-dir" / "x.db").open()


async def test_concurrent_commits_and_claims_do_not_interleave_their_transactions(store):
    commits = [store.commit([result(f"wb-{i}")]) for i in range(20)]
    claims = [store.claim_due(T0, limit=3, lease=timedelta(seconds=60)) for _ in range(5)]

    outcomes = await asyncio.gather(*commits, *claims)

    claimed = [d.id for batch in outcomes[20:] for d in batch]
    assert len(claimed) == len(set(claimed))  # never the same delivery twice
    assert await store.outbox_depth() == 20
