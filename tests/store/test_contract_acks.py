"""The Store protocol's acknowledge / snooze promises (#14), on every backend: an acknowledged or
snoozed firing is stored with the trace that says who did it, a later write of the same firing
that knows nothing of it keeps it, and a new firing (or its end) clears it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from bridge.model import RuleState, Trace
from tests.store.factories import T0, key, result

FIRING = RuleState(
    rule_id="action-needed",
    key=key("wb-1"),
    phase="firing",
    since=T0,
    due_at=T0 + timedelta(minutes=15),
    firing_seq=1,
    escalate_at=T0 + timedelta(minutes=30),
)
ACKED = replace(FIRING, acked_by="ada", acked_at=T0 + timedelta(minutes=5), due_at=None, escalate_at=None)


def trace(outcome: str = "acknowledged") -> Trace:
    return Trace(
        rule_id="action-needed",
        key=key("wb-1"),
        at=T0 + timedelta(minutes=5),
        trigger="ack",
        outcome=outcome,
        reasons=("acknowledged by ada at 2026-11-22T21:05:00Z",),
    )


async def test_an_acknowledged_firing_is_stored_with_its_trace(store):
    await store.commit([replace(result("wb-1"), rule_states=(FIRING,))])
    await store.record_ack(ACKED, trace())

    assert await store.list_rule_states() == [ACKED]
    [t] = await store.list_traces("action-needed", "wb-1")
    assert (t.trigger, t.outcome, t.reasons) == ("ack", "acknowledged", trace().reasons)


async def test_a_stale_write_of_the_same_firing_keeps_the_ack_and_the_snooze(store):
    await store.commit([replace(result("wb-1"), rule_states=(FIRING,))])
    await store.record_ack(ACKED, trace())
    # A writer that read the firing before the ack landed schedules its next reminder.
    stale = replace(FIRING, repeats=1, due_at=T0 + timedelta(minutes=45))
    await store.commit([replace(result("wb-1", sequence=2), rule_states=(stale,))])
    [kept] = await store.list_rule_states()
    assert (kept.acked_by, kept.acked_at, kept.repeats) == ("ada", ACKED.acked_at, 1)

    snoozed = replace(FIRING, key=key("wb-2"), snoozed_by="bo", snoozed_until=T0 + timedelta(hours=1))
    await store.commit([replace(result("wb-2"), rule_states=(replace(FIRING, key=key("wb-2")),))])
    await store.record_ack(snoozed, replace(trace("snoozed"), key=key("wb-2"), trigger="snooze"))
    await store.save_rule_states([replace(FIRING, key=key("wb-2"), repeats=1)])
    by_id = {st.key.resource_id: st for st in await store.list_rule_states()}
    assert (by_id["wb-2"].snoozed_by, by_id["wb-2"].snoozed_until) == ("bo", snoozed.snoozed_until)


async def test_a_new_firing_or_its_end_clears_the_ack(store):
    await store.commit([replace(result("wb-1"), rule_states=(FIRING,))])
    await store.record_ack(ACKED, trace())
    again = replace(FIRING, firing_seq=7, since=T0 + timedelta(hours=2))
    await store.save_rule_states([again])
    assert await store.list_rule_states() == [again]

    await store.record_ack(replace(again, acked_by="ada", acked_at=T0), trace())
    cooling = RuleState(rule_id="action-needed", key=key("wb-1"), phase="idle", since=T0, last_fired_at=T0)
    await store.save_rule_states([cooling])
    assert await store.list_rule_states() == [cooling]
