"""The poller's mirrors of rule and flap states under the changes another replica made
(`Evaluator.remember` / `forget`, `FlapBook.remember` / `forget`, #12): a state sent again is
applied again without changing anything, a moved one is due at its new time, and a forgotten one
is neither due nor firing (so it inhibits nothing)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.model import FlapState, ResourceKey, RuleState
from bridge.poll.evaluate import Evaluator
from bridge.poll.flapping import FlapBook

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
KEY = ResourceKey(provider="podero", source="podero.wallbox", resource_id="wb-1")
OTHER = ResourceKey(provider="podero", source="podero.wallbox", resource_id="wb-2")


def firing(key: ResourceKey, due_in: int) -> RuleState:
    return RuleState(rule_id="r", key=key, phase="firing", since=T0, due_at=T0 + timedelta(minutes=due_in))


def test_a_state_sent_again_changes_nothing_and_a_moved_one_is_due_at_its_new_time():
    ev = Evaluator({}, digest_groups={})
    ev.remember([firing(KEY, 5), firing(OTHER, 9)])
    ev.remember([firing(KEY, 5), firing(OTHER, 9)])  # re-sent: the same rows
    assert ev.next_due() == T0 + timedelta(minutes=5)
    assert list(ev.due_now(T0 + timedelta(minutes=5))) == [KEY]

    ev.remember([firing(KEY, 20)])  # moved on by another replica
    assert ev.next_due() == T0 + timedelta(minutes=9)
    assert list(ev.due_now(T0 + timedelta(minutes=10))) == [OTHER]


def test_a_forgotten_state_is_neither_due_nor_firing_and_unknown_keys_are_ignored():
    ev = Evaluator({}, digest_groups={})
    ev.remember([firing(KEY, 5), firing(OTHER, 9)])
    ev.forget([("r", KEY), ("r", ResourceKey(provider="podero", source="podero.wallbox", resource_id="x"))])

    assert ev.state_of("r", KEY) is None
    assert ev.next_due() == T0 + timedelta(minutes=9)
    assert ev._firing["r"]["podero"] == {OTHER}  # what inhibition looks up
    assert list(ev.due_now(T0 + timedelta(hours=1))) == [OTHER]


def test_a_forgotten_flap_state_no_longer_settles():
    book = FlapBook()
    flapping = FlapState(rule_id="f", key=KEY, since=T0, count=6, due_at=T0 + timedelta(minutes=15))
    book.remember([flapping, replace(flapping, key=OTHER, due_at=T0 + timedelta(minutes=30))])
    book.remember([flapping])  # re-sent
    assert book.next_due() == T0 + timedelta(minutes=15)

    book.forget([("f", KEY)])

    assert [s.key for s in book.flapping()] == [OTHER]
    assert book.next_due() == T0 + timedelta(minutes=30)
