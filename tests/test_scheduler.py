"""The timetable: one job per provider watch group, jittered first runs, no overlapping polls."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from bridge.app_keys import POLLER, PROVIDERS
from bridge.scheduler import MAX_FIRST_RUN_JITTER, PollScheduler, job_id


async def test_every_watch_group_gets_one_jittered_job(make_config, make_bridge, podero):
    user = podero.add_user(email="a@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    scheduler = PollScheduler(bridge.app[POLLER], list(bridge.app[PROVIDERS].values()), rng=random.Random(7))
    now = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    jobs = scheduler.plan(now)
    assert [j["id"] for j in jobs] == [job_id("podero", "wallboxes"), job_id("podero", "onboarding")]
    assert jobs[0]["id"] == "poll:podero:wallboxes"
    for job in jobs:
        assert job["interval"] == 60.0
        first_run = job["first_run"]
        assert isinstance(first_run, datetime)
        assert now <= first_run <= now + timedelta(seconds=MAX_FIRST_RUN_JITTER)


async def test_jobs_coalesce_and_never_overlap(make_config, make_bridge, podero):
    user = podero.add_user(email="a@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    scheduler = PollScheduler(bridge.app[POLLER], list(bridge.app[PROVIDERS].values()))
    scheduler.start()
    try:
        assert scheduler.running
        jobs = scheduler._scheduler.get_jobs()
        assert len(jobs) == 2
        for job in jobs:
            assert job.coalesce is True
            assert job.max_instances == 1
            assert job.trigger.interval == timedelta(seconds=60)
    finally:
        await scheduler.stop(drain=1.0)
    assert not scheduler.running


async def test_a_provider_without_static_watches_still_gets_jobs_for_run_time_watches(
    make_config, make_bridge
):
    bridge = await make_bridge(make_config(wallboxes=[]))
    scheduler = PollScheduler(bridge.app[POLLER], list(bridge.app[PROVIDERS].values()))
    assert len(scheduler.plan(datetime(2026, 11, 22, tzinfo=UTC))) == 2
