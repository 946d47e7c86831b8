"""Commits of several callers at once, on every backend: each caller's results land all or nothing
and durably before its await returns, one caller's failure is its own, a cancelled caller leaves
the others (and the store) whole, and one caller's commits land in the order it made them.

(SQLite merges concurrent callers into one transaction, `sqlite_group_commit.py`; PostgreSQL runs
them on separate connections. How SQLite merges is in test_sqlite_group_commit.py.)"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bridge.errors import CommitConflict, FencedOut, StoreError
from bridge.model import Delivery, PollResult
from bridge.store.base import Fence
from tests.store.factories import T0, key, result


def orphan(resource_id: str) -> PollResult:
    """A result whose delivery names no event: the store refuses it (foreign key)."""
    bad = Delivery(
        id=f"msg_orphan_{resource_id}",
        event_id="evt_that_does_not_exist",
        channel="partner",
        body=b"{}",
        next_attempt_at=T0,
        created_at=T0,
    )
    return PollResult(snapshot=result(resource_id).snapshot, deliveries=(bad,))


async def test_concurrent_commits_are_all_readable_once_each_await_returns(store):
    results = [result(f"wb-{i}") for i in range(12)]

    await asyncio.gather(*(store.commit([r]) for r in results))

    assert await store.get_snapshots("podero", "podero.wallbox") == {
        r.snapshot.key.resource_id: r.snapshot for r in results
    }
    assert len(await store.list_deliveries()) == 12


async def test_a_caller_whose_rows_are_refused_gets_its_own_error_and_the_others_commit(store):
    good = [result(f"wb-{i}") for i in range(4)]
    bad_call = [result("wb-bad-but-valid"), orphan("wb-bad")]

    outcomes = await asyncio.gather(
        *(store.commit([r]) for r in good[:2]),
        store.commit(bad_call),
        *(store.commit([r]) for r in good[2:]),
        return_exceptions=True,
    )

    assert [type(o) for o in outcomes] == [type(None), type(None), StoreError, type(None), type(None)]
    for r in good:
        assert await store.get_snapshot(r.snapshot.key) == r.snapshot
    # The failing caller's results went together: its valid one is not written either.
    assert await store.get_snapshot(key("wb-bad-but-valid")) is None
    assert await store.get_snapshot(key("wb-bad")) is None


async def test_a_caller_fenced_out_gets_fenced_out_and_the_others_commit(store):
    old = await store.acquire_lease("timers", "replica-a", T0, period=timedelta(minutes=1))
    assert old is not None
    later = T0 + timedelta(minutes=2)
    assert await store.acquire_lease("timers", "replica-b", later, period=timedelta(minutes=1)) is not None
    stale = Fence("timers", "replica-a", old)

    outcomes = await asyncio.gather(
        store.commit([result("wb-1")]),
        store.commit([result("wb-2")], fence=stale),
        store.commit([result("wb-3")]),
        return_exceptions=True,
    )

    assert outcomes[0] is None
    assert outcomes[2] is None
    assert isinstance(outcomes[1], FencedOut)
    assert await store.get_snapshot(key("wb-2")) is None
    assert set(await store.get_snapshots("podero", "podero.wallbox")) == {"wb-1", "wb-3"}


async def test_a_caller_that_lost_the_race_for_a_resource_gets_the_conflict_alone(store):
    await store.commit([result("wb-1", sequence=1)])
    winner = result("wb-1", sequence=2, state={"is_charging": False})
    loser = result("wb-1", sequence=2, state={"is_charging": True, "power": 1.0})

    outcomes = await asyncio.gather(
        store.commit([winner]), store.commit([loser]), store.commit([result("wb-2")]),
        return_exceptions=True,
    )  # fmt: skip

    # Whichever came second read version 1 and found 2: it alone is told, and the other two land.
    conflicts = [o for o in outcomes[:2] if isinstance(o, CommitConflict)]
    assert len(conflicts) == 1
    assert list(conflicts[0].keys) == [key("wb-1")]
    assert outcomes[2] is None
    stored = await store.get_snapshot(key("wb-1"))
    assert stored is not None
    assert stored.sequence == 2
    assert await store.get_snapshot(key("wb-2")) is not None


async def test_a_cancelled_caller_leaves_the_others_committed_and_its_own_results_whole_or_absent(store):
    tasks = [asyncio.create_task(store.commit([result(f"wb-{i}", channels=("a", "b"))])) for i in range(6)]
    await asyncio.sleep(0)  # every caller has started (and queued, where a store queues)
    tasks[2].cancel()

    outcomes = await asyncio.gather(*tasks, return_exceptions=True)

    assert isinstance(outcomes[2], asyncio.CancelledError)
    assert [o for i, o in enumerate(outcomes) if i != 2] == [None] * 5
    stored = await store.get_snapshots("podero", "podero.wallbox")
    assert {f"wb-{i}" for i in range(6) if i != 2} <= set(stored)
    cancelled = result("wb-2", channels=("a", "b"))
    landed = {d.id for d in await store.list_deliveries()} & {d.id for d in cancelled.deliveries}
    # All or nothing: its snapshot, event and both deliveries, or none of them.
    if "wb-2" in stored:
        assert landed == {d.id for d in cancelled.deliveries}
        assert await store.get_event(cancelled.events[0].id) is not None
    else:
        assert landed == set()
        assert await store.get_event(cancelled.events[0].id) is None
    await store.commit([result("wb-9")])  # the store is still usable
    assert await store.get_snapshot(key("wb-9")) is not None


async def test_one_callers_commits_land_in_the_order_it_made_them(store):
    for sequence in range(1, 6):
        await store.commit([result("wb-1", sequence=sequence, state={"n": sequence})])

    stored = await store.get_snapshot(key("wb-1"))
    assert stored is not None
    assert stored.sequence == 5
    assert stored.state == {"n": 5}
    events = [e for e in await store.list_events() if e.key == key("wb-1")]
    assert sorted(e.sequence for e in events) == [1, 2, 3, 4, 5]
