"""Traces and retention (#14) on every store: traces commit with their poll result and read back
newest first; retention deletes old rows in small batches and never what the outbox still owes."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bridge.model import Attempt, Change, Check, Trace
from bridge.store.base import PRUNE_ORDER
from tests.store.factories import T0, key, result


def trace(at=T0, outcome="no-match", event_ids=()) -> Trace:
    return Trace(
        rule_id="charging-started",
        key=key(),
        at=at,
        trigger="changed",
        changes=(Change(field="is_charging", old=False, new=False),),
        checks=(Check(name="to", want=True, got=False, ok=False),),
        outcome=outcome,
        reasons=("to: wanted true, got false",),
        event_ids=tuple(event_ids),
    )


async def test_traces_commit_with_their_result_and_read_back_newest_first(store):
    first = result(sequence=1, at=T0)
    await store.commit([replace(first, traces=(trace(T0),))])
    later = T0 + timedelta(minutes=1)
    second = result(sequence=2, at=later)
    fired = trace(later, outcome="sent", event_ids=[second.events[0].id])
    await store.commit([replace(second, traces=(fired,))])

    found = await store.list_traces("charging-started", "wb-1")
    assert found == [fired, trace(T0)]
    assert await store.list_traces("charging-started", "wb-1", limit=1) == [fired]
    assert await store.list_traces("charging-started", "wb-1", source="podero.heat_pump") == []
    assert await store.list_traces("other-rule", "wb-1") == []
    [d] = await store.deliveries_of_events(fired.event_ids)
    assert d.event_id == second.events[0].id


async def prune_all(store, before, limit=1) -> dict[str, int]:
    gone = dict.fromkeys(PRUNE_ORDER, 0)
    for kind in PRUNE_ORDER:
        while n := await store.prune(kind, before=before, limit=limit):
            gone[kind] += n
    return gone


async def test_retention_deletes_old_finished_work_in_batches_and_keeps_what_is_owed(store):
    old, new = result("wb-old", at=T0), result("wb-new", at=T0 + timedelta(days=40))
    owed = result("wb-owed", at=T0)  # its delivery is still pending: kept, with its event
    await store.commit([replace(old, traces=(trace(T0),)), new, owed])
    sent = old.deliveries[0]
    attempt = Attempt(delivery_id=sent.id, number=1, at=T0, ok=True, status_code=200)
    await store.record_attempt(attempt, status="delivered", next_attempt_at=None)

    gone = await prune_all(store, before=T0 + timedelta(days=30), limit=1)

    assert gone == {"traces": 1, "attempts": 1, "deliveries": 1, "events": 1}
    assert await store.get_event(old.events[0].id) is None
    assert await store.get_delivery(sent.id) is None
    assert await store.get_delivery(owed.deliveries[0].id) is not None
    assert await store.get_event(owed.events[0].id) is not None
    assert await store.get_event(new.events[0].id) is not None
    counts = await store.counts()
    assert (counts.events, counts.deliveries, counts.attempts, counts.traces) == (2, 2, 0, 0)


async def test_a_prune_with_nothing_old_deletes_nothing(store):
    await store.commit([replace(result(), traces=(trace(),))])
    assert await prune_all(store, before=T0) == dict.fromkeys(PRUNE_ORDER, 0)
    assert [x.outcome for x in await store.list_traces("charging-started", "wb-1")] == ["no-match"]
