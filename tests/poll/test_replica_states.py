"""Two replicas on one PostgreSQL store keep each other's rule states by reading only what changed
(#12, `Store.state_changes`): a hold one replica starts, breaks, or fires, and an acknowledgement
taken through the other, reach the other replica at its next tick, poll or acknowledgement,
without either reading every state again."""

from __future__ import annotations

from datetime import timedelta

from bridge.app_keys import POLLER
from bridge.model import ResourceKey
from bridge.store.base import StateChanges
from tests.store.conftest import pg_schema

WB = "00000000-0000-4000-8000-0000000000e1"
KEY = ResourceKey(provider="podero", source="podero.wallbox", resource_id=WB)
RULE = "action-needed-held"
TOKEN = "admin-token-for-tests-0123456789"

HELD = """
[[rule]]
id = "action-needed-held"
source = "podero.wallbox"
field = "action_needed"
to = true
for = "2m"
repeat = "1h"
resolve = true
type = "wallbox.action_needed"
channels = ["partner"]
"""


def answers_of(bridge) -> list[StateChanges]:
    """Every answer the bridge's store gives to `state_changes` from now on."""
    store = bridge.store
    seen: list[StateChanges] = []
    asked = store.state_changes

    async def spy(since: int | None) -> StateChanges:
        seen.append(await asked(since))
        return seen[-1]

    store.state_changes = spy
    return seen


def phase(bridge) -> str | None:
    st = bridge.app[POLLER].rule_state(RULE, KEY)
    return None if st is None else st.phase


async def test_a_hold_a_firing_and_an_ack_reach_the_other_replica_through_what_changed(
    make_config, make_bridge, podero, sink, clock
):
    user = podero.add_user(email="grace@example.com")
    podero.add_wallbox(user, wallbox_id=WB)
    async with pg_schema() as (url, schema):
        config = make_config(
            rules=HELD,
            wallboxes=[{"user_id": user, "wallbox_id": WB}],
            server={"listen": "127.0.0.1:0", "admin_token": TOKEN},
            store={"url": f"{url}?search_path={schema}"},
        )
        a = await make_bridge(config)  # polls
        b = await make_bridge(config)  # ticks (the timers lease holder)
        b_answers, a_answers = answers_of(b), answers_of(a)
        await a.poll()  # baseline

        # A starts a hold; B's next tick knows it. A breaks it; B's next tick forgets it.
        podero.add_action(WB, code="reauthenticate")
        clock.advance(timedelta(minutes=1))
        await a.poll()
        await b.tick()
        assert phase(b) == "pending"
        podero.resolve_action(WB, "reauthenticate")
        clock.advance(timedelta(minutes=1))
        await a.poll()
        await b.tick()
        assert phase(b) is None
        clock.advance(timedelta(minutes=5))
        assert await b.tick() == 0  # the broken hold does not fire on B

        # A starts another; B fires it when it has lasted; A acknowledges it (its own mirror still
        # says pending: the acknowledgement catches up first), and B's reminders stop.
        podero.add_action(WB, code="reauthenticate")
        clock.advance(timedelta(minutes=1))
        await a.poll()
        clock.advance(timedelta(minutes=2))
        assert await b.tick() == 1
        await b.deliver()
        assert phase(a) == "pending"
        acked = await a.client.post(
            "/api/acks",
            json={"rule": RULE, "resource_id": WB, "by": "eve"},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert acked.status == 201
        clock.advance(timedelta(hours=2))
        assert await b.tick() == 0
        st = b.app[POLLER].rule_state(RULE, KEY)
        assert st is not None
        assert st.acked_by == "eve"
        await sink.wait_for(1)
        assert [h.json["data"]["status"] for h in sink.received] == ["firing"]

        # Every one of those catch-ups was a delta, not a read of every state.
        assert b_answers
        assert a_answers
        assert not any(c.full for c in b_answers + a_answers)
        assert any(c.rules_gone for c in b_answers)  # the broken hold, as a deletion
