"""Rule timers on replicas: two bridges on one PostgreSQL database tick their timers, but only the
holder of the `timers` lease acts, so a due hold fires exactly once; when the holder dies its timers
move to the other replica within one lease period; and a holder that paused mid-tick past its lease
has its late commit refused by the lease's fencing token (ManualClock throughout)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bridge.app_keys import DIGESTER, METRICS, POLLER
from bridge.poll.ownership import PollOwnership
from bridge.poll.timers import TIMERS_LEASE, tick_timers
from tests.store.conftest import pg_schema

PERIOD = timedelta(seconds=30)
WB = "00000000-0000-4000-8000-0000000000d1"

HELD = """
[[rule]]
id = "action-needed-held"
source = "podero.wallbox"
field = "action_needed"
to = true
for = "2m"
repeat = "1h"
repeat_max = 2
type = "wallbox.action_needed"
channels = ["partner"]
"""


async def tick(bridge, owner: PollOwnership) -> int | None:
    """What a replica's timer loop does once a second."""
    app = bridge.app
    return await tick_timers(app[POLLER], app[DIGESTER], ownership=owner, metrics=app[METRICS])


async def settle(sink, n: int, *bridges) -> None:
    """Until the sink has `n` webhooks and no replica has a send in flight (each replica's delivery
    worker also runs in the background, woken by the shared store's outbox poll)."""
    for bridge in bridges:
        await bridge.deliver()
    await sink.wait_for(n)
    for bridge in bridges:
        await bridge.deliver()


def statuses(sink) -> list[tuple[str, int]]:
    return [(h.json["data"]["status"], h.json["data"]["sequence"]) for h in sink.received]


async def two_replicas(make_config, make_bridge, podero, clock, url: str):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB)
    config = make_config(rules=HELD, wallboxes=[{"user_id": user, "wallbox_id": WB}], store={"url": url})
    a, b = await make_bridge(config), await make_bridge(config)
    owners = [
        PollOwnership(x.store, clock, replica_id=f"replica-{n}", period=PERIOD) for n, x in enumerate((a, b))
    ]
    await a.poll()  # baseline
    podero.add_action(WB, code="reauthenticate")
    clock.advance(timedelta(seconds=60))
    await a.poll()  # the hold starts (a rule state in the shared store), due in 2 minutes
    return a, b, owners


async def test_a_due_hold_fires_exactly_once_and_a_dead_holders_timers_move_within_one_lease_period(
    make_config, make_bridge, podero, sink, clock
):
    async with pg_schema() as (url, schema):
        a, b, (owner_a, owner_b) = await two_replicas(
            make_config, make_bridge, podero, clock, f"{url}?search_path={schema}"
        )
        clock.advance(timedelta(minutes=2))
        fired = [await tick(a, owner_a), await tick(b, owner_b)]  # both timer loops run
        assert fired == [1, None]  # A took the lease and fired; B skipped the tick
        assert [await tick(b, owner_b), await tick(a, owner_a)] == [None, 0]  # nothing twice
        await settle(sink, 1, a, b)
        assert statuses(sink) == [("firing", 1)]

        # A keeps ticking (and so renewing) until 20 s before the first reminder, then dies.
        clock.advance(timedelta(minutes=59, seconds=40))
        assert await tick(a, owner_a) == 0
        last_renewal = clock.now()
        clock.advance(timedelta(seconds=25))  # the reminder is due, A's lease still alive
        assert await tick(b, owner_b) is None
        clock.advance(PERIOD - timedelta(seconds=25))  # one lease period after A's last renewal
        assert await tick(b, owner_b) == 1  # B took over and sent the reminder
        assert clock.now() - last_renewal <= PERIOD
        assert owner_b.held[TIMERS_LEASE] > 1  # a new fencing token
        await settle(sink, 2, a, b)
        assert statuses(sink) == [("firing", 1), ("firing", 2)]
        assert len({h.headers["webhook-id"] for h in sink.received}) == 2


async def test_a_tick_paused_past_its_lease_has_its_late_commit_refused(
    make_config, make_bridge, podero, sink, clock, monkeypatch
):
    async with pg_schema() as (url, schema):
        a, b, (owner_a, owner_b) = await two_replicas(
            make_config, make_bridge, podero, clock, f"{url}?search_path={schema}"
        )
        assert await tick(a, owner_a) == 0  # A holds the timers lease
        clock.advance(timedelta(minutes=2))  # the hold is due

        # A's tick reads the rule states (the hold is due), then stalls before it reads the
        # resource's snapshot: a GC pause, a stopped VM, a network stall.
        stalled, resume = asyncio.Event(), asyncio.Event()
        get_snapshots = a.store.get_snapshots_by_id  # how a tick reads its slice's snapshots

        async def stalling(provider, source, ids):
            stalled.set()
            await resume.wait()
            return await get_snapshots(provider, source, ids)

        monkeypatch.setattr(a.store, "get_snapshots_by_id", stalling)
        paused = asyncio.create_task(tick(a, owner_a))
        await asyncio.wait_for(stalled.wait(), 10)
        clock.advance(PERIOD + timedelta(seconds=1))  # A's lease runs out while it is stalled
        assert await tick(b, owner_b) == 1  # B takes the lease over and fires the hold
        resume.set()
        # A goes on with the state it read before B fired: it reads B's snapshot (so the
        # compare-and-swap alone would let its write land), but the fence refuses it.
        assert await asyncio.wait_for(paused, 10) is None
        monkeypatch.undo()

        assert TIMERS_LEASE not in owner_a.held
        assert a.app[METRICS].fenced_refused == {"timers": 1}
        events = await a.store.list_events(limit=100)
        assert [e.status for e in events if e.rule_id == "action-needed-held"] == ["firing"]  # B's only
        await settle(sink, 1, a, b)
        assert [s for s, _ in statuses(sink)] == ["firing"]
