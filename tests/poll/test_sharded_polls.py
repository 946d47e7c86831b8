"""Two replicas on one PostgreSQL database share one provider's fleet: a by-id group is polled in
shards, each replica holds its even part of them, each wallbox is read once per interval, and a
killed replica's shards move to the survivor once its leases expire (then back when it returns), and
a replica that stops cleanly hands its shards over at once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from bridge.app_keys import FETCH_POOLS, POLLER, PROVIDERS
from bridge.poll.membership import Membership
from bridge.poll.ownership import PollOwnership
from bridge.shards import shard_of
from tests.store.conftest import pg_schema

PERIOD = timedelta(seconds=30)
INTERVAL = timedelta(seconds=60)
SHARDS = 4
WALLBOXES = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 25)]


def replica(bridge, clock, name: str) -> PollOwnership:
    membership = Membership(
        bridge.store,
        clock,
        replica_id=name,
        period=PERIOD,
        providers=bridge.app[PROVIDERS],
        pools=bridge.app[FETCH_POOLS],
    )
    return PollOwnership(bridge.store, clock, replica_id=name, period=PERIOD, membership=membership)


def shards_held(owner: PollOwnership) -> list[str]:
    return sorted(n.rsplit(":", 1)[1] for n in owner.held if n.startswith("poll:podero:wallboxes:"))


async def test_two_replicas_split_the_shards_read_each_wallbox_once_and_a_dead_ones_shards_move(
    make_config, make_bridge, podero, sink, clock
):
    assert len({shard_of(wb, SHARDS) for wb in WALLBOXES}) == SHARDS  # every shard has wallboxes
    user = podero.add_user(email="ada@example.com")
    for wb in WALLBOXES:
        podero.add_wallbox(user, wallbox_id=wb, is_plugged_in=True, is_charging=False)
    async with pg_schema() as (url, schema):
        config = make_config(
            wallboxes=[{"user_id": user, "wallbox_id": wb} for wb in WALLBOXES],
            store={"url": f"{url}?search_path={schema}"},
            cluster={"shards": SHARDS},
        )
        bridges = [await make_bridge(config) for _ in range(2)]
        owners = [replica(b, clock, f"replica-{i}") for i, b in enumerate(bridges)]
        alive = [0, 1]
        for i in alive:
            assert owners[i].membership is not None
            await owners[i].membership.heartbeat()  # both joined before their first poll

        async def one_interval() -> dict[int, list[int]]:
            """Every live replica's timetable fires each shard's job; the holder polls it.
            Heartbeats run every 20 s of the interval. Returns shard → the replicas that polled it."""
            podero.requests.clear()
            polled: dict[int, list[int]] = {k: [] for k in range(SHARDS)}
            for i in alive:
                for k in range(SHARDS):
                    if await owners[i].owns("podero", "wallboxes", (k, SHARDS)):
                        provider = bridges[i].app[PROVIDERS]["podero"]
                        await bridges[i].app[POLLER].poll(provider, "wallboxes", shard=(k, SHARDS))
                        polled[k].append(i)
            for _ in range(3):
                clock.advance(INTERVAL / 3)
                for i in alive:
                    await owners[i].heartbeat()
            return polled

        def reads() -> Counter[str]:
            return Counter(p.rsplit("/", 1)[1] for m, p in podero.requests if "/wallboxes/" in p)

        # Both alive: two shards each, every shard polled once, every wallbox read once.
        for _ in range(2):
            polled = await one_interval()
            assert all(len(by) == 1 for by in polled.values())
            assert reads() == Counter(WALLBOXES)
        assert len(shards_held(owners[0])) == len(shards_held(owners[1])) == SHARDS // 2
        assert set(shards_held(owners[0])).isdisjoint(shards_held(owners[1]))

        # replica-1 is SIGKILLed: its heartbeats stop. The interval after, its shards are still
        # leased (nobody reads them); one lease period later replica-0 holds all four.
        lost = {int(s.split("/")[0]) for s in shards_held(owners[1])}
        alive.remove(1)
        polled = await one_interval()
        assert all(polled[k] == [] for k in lost)
        assert all(polled[k] == [0] for k in polled if k not in lost)
        podero.update_wallbox(WALLBOXES[0], is_charging=True)  # a change while a shard changes hands
        polled = await one_interval()
        assert all(by == [0] for by in polled.values())
        assert reads() == Counter(WALLBOXES)
        assert len(shards_held(owners[0])) == SHARDS

        # replica-1 comes back: replica-0 gives up the shards over its quota at their runs, and
        # replica-1 takes them in the same interval; still each shard polled once.
        alive.append(1)
        await owners[1].heartbeat()
        await owners[0].heartbeat()
        polled = await one_interval()
        assert all(len(by) == 1 for by in polled.values())
        assert sorted(i for by in polled.values() for i in by) == [0, 0, 1, 1]
        assert reads() == Counter(WALLBOXES)

        # replica-1 stops cleanly (SIGTERM): it releases its shards and its membership at once, and
        # replica-0, looking again at the members a tenth of a lease period later, takes them at
        # their next runs instead of waiting for any lease to expire.
        await owners[1].release()
        alive.remove(1)
        clock.advance(PERIOD / 10)
        polled = await one_interval()
        assert all(by == [0] for by in polled.values())
        assert reads() == Counter(WALLBOXES)

        for b in bridges:
            await b.deliver()
        events = await bridges[0].store.list_events(limit=100)
        assert [e.key.resource_id for e in events if e.key.source == "podero.wallbox"] == [WALLBOXES[0]]
        assert [r.json["data"]["resource_id"] for r in sink.received] == [WALLBOXES[0]]
