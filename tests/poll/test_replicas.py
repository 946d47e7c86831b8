"""Three replicas on one PostgreSQL database: each watch group is polled by the one replica holding
its lease, a killed owner's group is taken over within one lease period, and every transition is
notified exactly once (the snapshot compare-and-swap and the events' unique key stand behind it)."""

from __future__ import annotations

from datetime import timedelta

from bridge.poll.ownership import PollOwnership
from tests.store.conftest import pg_schema

PERIOD = timedelta(seconds=30)
INTERVAL = timedelta(seconds=60)
WALLBOXES = [f"00000000-0000-4000-8000-{i:012d}" for i in range(1, 9)]


async def test_three_replicas_poll_by_lease_take_over_a_killed_owner_and_notify_each_change_once(
    make_config, make_bridge, podero, sink, clock
):
    user = podero.add_user(email="ada@example.com")
    for wb in WALLBOXES:
        podero.add_wallbox(user, wallbox_id=wb, is_plugged_in=True, is_charging=False)
    async with pg_schema() as (url, schema):
        config = make_config(
            wallboxes=[{"user_id": user, "wallbox_id": wb} for wb in WALLBOXES],
            store={"url": f"{url}?search_path={schema}"},
        )
        bridges = [await make_bridge(config) for _ in range(3)]
        owners = [
            PollOwnership(b.store, clock, replica_id=f"replica-{i}", period=PERIOD)
            for i, b in enumerate(bridges)
        ]
        alive = [0, 1, 2]

        async def one_interval() -> list[int]:
            """Every live replica's timetable fires; those holding the lease poll. Heartbeats run
            every 20 s of the interval."""
            polled = []
            for i in alive:
                if await owners[i].owns("podero", "wallboxes"):
                    await bridges[i].poll()
                    polled.append(i)
            for _ in range(3):
                clock.advance(INTERVAL / 3)
                for i in alive:
                    await owners[i].heartbeat()
            return polled

        assert len(await one_interval()) == 1  # the baseline, by whichever replica asked first
        pollers: list[list[int]] = []
        killed_at = None
        for n, wb in enumerate(WALLBOXES):
            podero.update_wallbox(wb, is_charging=True)  # one new transition per interval
            if n == 3:  # SIGKILL the owner: its heartbeats stop, its lease runs out
                [owner] = pollers[-1]
                alive.remove(owner)
                killed_at = clock.now()
            polled = await one_interval()
            pollers.append(polled)
            assert len(polled) <= 1  # never two replicas on one group in one interval
        for b in bridges:  # every replica's delivery worker claims from the one outbox
            await b.deliver()

        # The run right after the kill finds the lease still alive (nobody polls: wallbox 4 waits);
        # the next run, one lease period later, is another replica's, and reads what was missed.
        assert killed_at is not None
        assert pollers[3] == []
        assert pollers[4][0] in alive
        assert all(len(p) == 1 and p[0] == pollers[4][0] for p in pollers[4:])
        # 0 lost, 0 duplicates: one event and one webhook per wallbox that started charging.
        events = await bridges[0].store.list_events(limit=1000)
        assert sorted(e.key.resource_id for e in events if e.key.source == "podero.wallbox") == WALLBOXES
        received = [r.json["data"]["resource_id"] for r in sink.received]
        assert sorted(received) == WALLBOXES
        assert len({r.webhook_id for r in sink.received}) == len(WALLBOXES)
