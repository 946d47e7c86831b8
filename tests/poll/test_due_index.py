"""The due-timer index (bridge/poll/due_index.py): the earliest live due time without a walk over
every timer; a timer that moved on or went away is not reported; one left as it was when acted upon
is due again at the next look; the heap is rebuilt when stale entries pile up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.poll.due_index import DueIndex

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def index() -> tuple[dict[str, datetime | None], DueIndex[str]]:
    timers: dict[str, datetime | None] = {}
    return timers, DueIndex(timers.get)


def test_the_earliest_is_the_earliest_live_time_and_moved_or_gone_timers_are_skipped():
    timers, idx = index()
    for key, minute in (("a", 5), ("b", 1), ("c", 3)):
        timers[key] = at(minute)
        idx.push(key, at(minute))
    assert idx.earliest(len(timers)) == at(1)
    timers["b"] = at(9)  # moved on: pushed again, the old entry is stale
    idx.push("b", at(9))
    del timers["c"]  # gone
    assert idx.earliest(len(timers)) == at(5)
    assert idx.due(at(4)) == []
    assert idx.due(at(9)) == ["a", "b"]


def test_a_due_timer_not_moved_on_is_due_again_and_a_moved_one_is_not():
    timers, idx = index()
    timers.update(a=at(1), b=at(2))
    idx.push("a", at(1))
    idx.push("b", at(2))
    assert idx.due(at(2)) == ["a", "b"]
    timers["a"] = at(30)  # acted upon: moved on
    idx.push("a", at(30))
    assert idx.due(at(3)) == ["b"]  # b was left as it was: due again
    assert idx.earliest(len(timers)) == at(2)
    timers["b"] = None  # no timer any more
    assert idx.earliest(len(timers)) == at(30)


def test_stale_entries_beyond_twice_the_live_timers_are_compacted():
    timers, idx = index()
    timers["a"] = at(0)
    for minute in range(5000):  # the same timer moved 5,000 times
        timers["a"] = at(minute)
        idx.push("a", at(minute))
    assert idx.earliest(len(timers)) == at(4999)
    assert len(idx._heap) <= 2 * len(timers) + 1024


def test_a_limit_takes_the_earliest_and_leaves_the_rest_due():
    timers, idx = index()
    for minute in range(10):
        timers[f"k{minute}"] = at(minute)
        idx.push(f"k{minute}", at(minute))
    assert idx.due(at(20), limit=3) == ["k0", "k1", "k2"]
    for key in ("k0", "k1", "k2"):  # acted upon: no timer any more
        timers[key] = None
    assert idx.due(at(20), limit=3) == ["k3", "k4", "k5"]
