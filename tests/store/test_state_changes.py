"""`Store.state_changes` (#12): what a replica reads to keep its mirror of rule and flap states up to
date. On every backend: a mirror that applies each answer equals the store after every kind of
write (commit, save, ack, removal of a rule, prune). On PostgreSQL, where replicas rely on it: an
answer holds only what was written since the watermark, inserts, updates and deletions; a write
that commits after a read began is in the next answer even if it began first; forgotten deletions
make an older watermark read in full."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import asyncpg
import pytest

from bridge.model import FlapState, RuleState, Trace
from bridge.store import postgres_rows as rows_
from bridge.store import postgres_sql as q
from bridge.store.base import StateChanges, StateKey, Store
from bridge.store.postgres import PostgresStore
from tests.store.conftest import pg_schema
from tests.store.factories import T0, key, pending, result


def flap(resource_id: str, muted: int = 0) -> FlapState:
    return FlapState(
        rule_id="wallbox-connection",
        key=key(resource_id),
        since=T0,
        count=7,
        first="online",
        last="offline",
        last_change_at=T0,
        muted=muted,
        due_at=T0 + timedelta(minutes=15),
    )


def firing(resource_id: str) -> RuleState:
    return replace(pending(resource_id), phase="firing", due_at=T0 + timedelta(hours=1), firing_seq=1)


class Mirror:
    """What the poller keeps: the states, updated from each answer (as `PollerMirrors._apply`)."""

    def __init__(self) -> None:
        self.rules: dict[StateKey, RuleState] = {}
        self.flaps: dict[StateKey, FlapState] = {}
        self.mark: int | None = None

    async def catch_up(self, store: Store) -> StateChanges:
        changes = await store.state_changes(self.mark)
        if changes.full:
            self.rules.clear()
            self.flaps.clear()
        for gone in changes.rules_gone:
            self.rules.pop(gone, None)
        for gone in changes.flaps_gone:
            self.flaps.pop(gone, None)
        self.rules.update({(s.rule_id, s.key): s for s in changes.rule_states})
        self.flaps.update({(s.rule_id, s.key): s for s in changes.flap_states})
        self.mark = changes.watermark
        return changes

    async def equals(self, store: Store) -> bool:
        await self.catch_up(store)
        stored_rules = {(s.rule_id, s.key): s for s in await store.list_rule_states()}
        stored_flaps = {(s.rule_id, s.key): s for s in await store.list_flap_states()}
        return self.rules == stored_rules and self.flaps == stored_flaps


def ids(states: tuple[RuleState, ...] | tuple[FlapState, ...] | tuple[StateKey, ...]) -> list[str]:
    return sorted(s[1].resource_id if isinstance(s, tuple) else s.key.resource_id for s in states)


async def test_a_first_read_is_every_state_in_full(store):
    await store.commit([replace(result("wb-1"), rule_states=(pending("wb-1"),), flaps=(flap("wb-1"),))])
    await store.save_rule_states([pending("wb-2")])

    first = await store.state_changes(None)

    assert first.full
    assert ids(first.rule_states) == ["wb-1", "wb-2"]
    assert first.flap_states == (flap("wb-1"),)
    assert first.rules_gone == first.flaps_gone == ()


async def test_a_mirror_that_applies_each_answer_equals_the_store_after_every_kind_of_write(store):
    mirror = Mirror()
    assert await mirror.equals(store)  # empty
    await store.commit([replace(result("wb-1"), rule_states=(pending("wb-1"),), flaps=(flap("wb-1"),))])
    assert await mirror.equals(store)
    await store.save_rule_states([pending("wb-2"), firing("wb-3")])  # new rows
    assert await mirror.equals(store)
    await store.save_rule_states([firing("wb-1")])  # an update
    assert await mirror.equals(store)
    acked = replace(firing("wb-3"), acked_by="ada", acked_at=T0, due_at=None)
    ack = Trace(rule_id=acked.rule_id, key=acked.key, at=T0, trigger="ack", outcome="acknowledged")
    await store.record_ack(acked, ack)
    assert await mirror.equals(store)
    assert mirror.rules[(acked.rule_id, acked.key)].acked_by == "ada"
    forgotten = replace(pending("wb-2"), phase="idle", due_at=None)
    await store.save_rule_states([forgotten])  # a forgettable state: its row is deleted
    await store.save_flap_states([flap("wb-2"), FlapState(rule_id="wallbox-connection", key=key("wb-1"))])
    assert await mirror.equals(store)
    assert (forgotten.rule_id, forgotten.key) not in mirror.rules
    await store.delete_rule_states(["action-needed", "wallbox-connection"])  # rules a reload removed
    assert await mirror.equals(store)
    assert mirror.rules == mirror.flaps == {}
    await store.save_rule_states([pending("wb-2")])  # written again after its deletion
    await store.prune_tombstones(timedelta(0))
    assert await mirror.equals(store)
    assert list(mirror.rules) == [("action-needed", key("wb-2"))]


# -- PostgreSQL: what replicas rely on -------------------------------------------------------------


@pytest.fixture
async def pg() -> PostgresStore:
    async with pg_schema() as (url, schema):
        store = PostgresStore(url, schema=schema, pool_size=3)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


async def writer(store: PostgresStore) -> asyncpg.Connection:
    """A connection of its own (another replica's), on the store's schema."""
    return await asyncpg.connect(store.url, server_settings={"search_path": store._schema_name})


async def test_an_answer_holds_only_what_was_written_since_the_watermark(pg):
    await pg.save_rule_states([pending("wb-1"), pending("wb-2"), pending("wb-3")])
    await pg.save_flap_states([flap("wb-1"), flap("wb-2")])
    mark = (await pg.state_changes(None)).watermark
    quiet = await pg.state_changes(mark)
    assert not quiet.full
    assert quiet.rule_states == quiet.flap_states == quiet.rules_gone == quiet.flaps_gone == ()

    await pg.save_rule_states([pending("wb-4"), firing("wb-2")])  # an insert and an update
    await pg.save_rule_states([replace(pending("wb-3"), phase="idle", due_at=None)])  # a delete
    settled = FlapState(rule_id="wallbox-connection", key=key("wb-2"))  # forgettable: deleted
    await pg.save_flap_states([flap("wb-1", muted=2), settled])
    changes = await pg.state_changes(quiet.watermark)

    assert not changes.full
    assert ids(changes.rule_states) == ["wb-2", "wb-4"]
    assert ids(changes.rules_gone) == ["wb-3"]
    assert changes.flap_states == (flap("wb-1", muted=2),)
    assert ids(changes.flaps_gone) == ["wb-2"]
    after = await pg.state_changes(changes.watermark)
    assert after.rule_states == after.rules_gone == after.flap_states == after.flaps_gone == ()


async def test_a_write_that_began_before_a_read_and_commits_after_it_is_in_the_next_answer(pg):
    mark = (await pg.state_changes(None)).watermark
    slow, quick = await writer(pg), await writer(pg)
    try:
        # The slow transaction takes its id first and writes; a quicker one, with a greater id,
        # commits before the read. A watermark of "the greatest id seen" would skip the slow one.
        slow_tx = slow.transaction()
        await slow_tx.start()
        await slow.execute(q.Q_RULE_STATE_UPSERT, *rows_.rule_state_row(pending("wb-slow")))
        await quick.execute(q.Q_RULE_STATE_UPSERT, *rows_.rule_state_row(pending("wb-quick")))
        read = await pg.state_changes(mark)
        await slow_tx.commit()
    finally:
        await slow.close()
        await quick.close()

    assert ids(read.rule_states) == ["wb-quick"]  # the slow one had not committed
    # The next answer has it; the quick one again too (harmless): its id is above the slow one's,
    # which was still running when the watermark was taken.
    assert ids((await pg.state_changes(read.watermark)).rule_states) == ["wb-quick", "wb-slow"]


async def test_a_state_deleted_then_written_again_is_a_change_not_a_deletion(pg):
    await pg.save_rule_states([pending("wb-1")])
    mark = (await pg.state_changes(None)).watermark
    await pg.save_rule_states([replace(pending("wb-1"), phase="idle", due_at=None)])
    await pg.save_rule_states([firing("wb-1")])

    changes = await pg.state_changes(mark)

    assert changes.rule_states == (firing("wb-1"),)
    assert changes.rules_gone == ()


async def test_forgotten_deletions_make_an_older_watermark_read_in_full(pg):
    await pg.save_rule_states([pending("wb-1"), pending("wb-2")])
    await pg.save_flap_states([flap("wb-1")])
    mark = (await pg.state_changes(None)).watermark
    await pg.delete_rule_states(["action-needed", "wallbox-connection"])
    await pg.save_rule_states([pending("wb-2")])
    assert await pg.prune_tombstones(timedelta(hours=1)) == 0  # too young to forget
    assert ids((await pg.state_changes(mark)).rules_gone) == ["wb-1"]

    assert await pg.prune_tombstones(timedelta(0)) == 3  # two rule states and a flap state
    reread = await pg.state_changes(mark)

    assert reread.full  # it may have missed a deletion: every state, to mirror exactly
    assert reread.rule_states == (pending("wb-2"),)
    assert reread.flap_states == ()
    newer = await pg.state_changes(reread.watermark)
    assert not newer.full  # a watermark taken after the prune is still covered
