"""Flap detection states (#14, `flap`) in the store, on every backend: committed with the poll
result that moved them (or rolled back with it), read back exactly (times, JSON values, the flips
in the window), saved on their own, forgotten when there is nothing left to remember, and dropped
with the rule by a reload."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.errors import StoreError
from bridge.model import Delivery, FlapState, Flip, PollResult
from tests.store.factories import T0, key, result


def counting(resource_id: str = "wb-1") -> FlapState:
    flips = (
        Flip(at=T0, old="online", new="offline"),
        Flip(at=T0 + timedelta(minutes=1), old="offline", new={"nested": [1, None, True]}),
    )
    return FlapState(
        rule_id="wallbox-connection",
        key=key(resource_id),
        flips=flips,
        last_change_at=T0 + timedelta(minutes=1),
        due_at=T0 + timedelta(minutes=11),
    )


def flapping(resource_id: str = "wb-1") -> FlapState:
    return FlapState(
        rule_id="wallbox-connection",
        key=key(resource_id),
        since=T0,
        count=7,
        first="online",
        last=None,
        last_change_at=T0 + timedelta(minutes=7),
        muted=3,
        due_at=T0 + timedelta(minutes=22),
    )


def by_key(states: list[FlapState]) -> dict[str, FlapState]:
    return {s.key.resource_id: s for s in states}


async def test_flap_states_commit_with_their_poll_result_and_read_back_exactly(store):
    await store.commit([replace(result("wb-1"), flaps=(counting("wb-1"), flapping("wb-2")))])

    assert by_key(await store.list_flap_states()) == {"wb-1": counting("wb-1"), "wb-2": flapping("wb-2")}


async def test_a_failing_commit_writes_no_flap_state(store):
    orphan = Delivery(
        id="msg_orphan",
        event_id="evt_missing",
        channel="partner",
        body=b"{}",
        next_attempt_at=T0,
        created_at=T0,
    )
    bad = PollResult(snapshot=result("wb-bad").snapshot, deliveries=(orphan,), flaps=(flapping("wb-bad"),))

    with pytest.raises(StoreError):
        await store.commit([bad])

    assert await store.list_flap_states() == []


async def test_a_moved_state_replaces_the_row_and_a_forgettable_one_deletes_it(store):
    await store.commit([replace(result("wb-1"), flaps=(counting("wb-1"), counting("wb-2")))])
    now_flapping = flapping("wb-1")
    done = FlapState(rule_id="wallbox-connection", key=key("wb-2"))
    assert done.forgettable
    await store.commit([replace(result("wb-1", sequence=2), flaps=(now_flapping, done))])

    assert await store.list_flap_states() == [now_flapping]


async def test_save_flap_states_writes_and_forgets_without_a_poll_result(store):
    await store.save_flap_states([counting("wb-1"), flapping("wb-2")])
    await store.save_flap_states([FlapState(rule_id="wallbox-connection", key=key("wb-1"))])

    assert await store.list_flap_states() == [flapping("wb-2")]


async def test_deleting_a_rules_states_drops_its_flap_states_too(store):
    other = replace(flapping("wb-3"), rule_id="other-rule")
    await store.save_flap_states([counting("wb-1"), flapping("wb-2"), other])

    await store.delete_rule_states(["wallbox-connection"])

    assert await store.list_flap_states() == [other]
