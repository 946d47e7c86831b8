"""The timetable: one job per provider watch group, jittered first runs, no overlapping polls."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
import structlog
from structlog.testing import LogCapture

from bridge.app_keys import POLLER, PROVIDERS
from bridge.poll import scheduler as scheduler_module
from bridge.poll.ownership import PollOwnership
from bridge.poll.scheduler import MAX_FIRST_RUN_JITTER, PollScheduler, job_id
from tests.conftest import ORG


async def test_every_watch_group_gets_one_jittered_job(make_config, make_bridge, podero):
    user = podero.add_user(email="a@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    scheduler = PollScheduler(bridge.app[POLLER], list(bridge.app[PROVIDERS].values()), rng=random.Random(7))
    now = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    jobs = scheduler.plan(now)
    groups = ("wallboxes", "heat_pumps", "electric_vehicles", "inverters", "onboarding")
    assert [j["id"] for j in jobs] == [job_id("podero", g) for g in groups]
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
        assert len(jobs) == 5  # four device families and onboarding
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
    assert len(scheduler.plan(datetime(2026, 11, 22, tzinfo=UTC))) == 5


async def test_on_a_shared_store_by_id_groups_get_one_job_per_shard_and_listings_stay_one(
    make_config, make_bridge, podero, clock
):
    podero_cfg = {"kind": "podero", "base_url": podero.base_url, "client_id": "c", "client_secret": "s"}
    config = make_config(
        providers={
            "podero": {**podero_cfg, "org_id": ORG, "discover": True},
            "wattshift": {"kind": "wattshift", "base_url": "http://127.0.0.1:9", "api_key": "k"},
        }
    )
    bridge = await make_bridge(config)
    ownership = PollOwnership(bridge.store, clock, replica_id="r", period=timedelta(seconds=30))
    providers = list(bridge.app[PROVIDERS].values())
    sharded = PollScheduler(bridge.app[POLLER], providers, ownership=ownership, shards=3)
    ids = [j["id"] for j in sharded.plan(datetime(2026, 11, 22, tzinfo=UTC))]
    # Podero with discover lists every device family (one job each); onboarding is by id (3 shards);
    # WattShift lists its homes.
    assert ids == [
        "poll:podero:wallboxes",
        "poll:podero:heat_pumps",
        "poll:podero:electric_vehicles",
        "poll:podero:inverters",
        "poll:podero:onboarding:0/3",
        "poll:podero:onboarding:1/3",
        "poll:podero:onboarding:2/3",
        "poll:wattshift:homes",
    ]
    # One process (no leases): never sharded, whatever `shards` says.
    single = PollScheduler(bridge.app[POLLER], providers, shards=3)
    assert len(single.plan(datetime(2026, 11, 22, tzinfo=UTC))) == 6


class _LatestFirstRun(random.Random):
    """Jitter at its maximum, so no job runs by itself while a test drives `_run`."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def _paused_scheduler(bridge) -> PollScheduler:
    scheduler = PollScheduler(bridge.app[POLLER], list(bridge.app[PROVIDERS].values()), rng=_LatestFirstRun())
    scheduler.start()
    scheduler._scheduler.pause()  # the timetable exists; only the test runs polls
    return scheduler


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_a_fault_never_moves_the_timetable(make_config, make_bridge, podero, status):
    # #18: a Retry-After once pushed the group's job 28 hours back. Back-off is the poller's now
    # (bridge/poll/backoff.py, on the injected clock); the job runs on time and asks less, or nothing.
    user = podero.add_user(email="a@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    scheduler = await _paused_scheduler(bridge)
    try:
        planned = {j.id: j.next_run_time for j in scheduler._scheduler.get_jobs()}
        podero.fail("wallbox", status=status, headers={"Retry-After": "99999"})

        await scheduler._run(bridge.app[PROVIDERS]["podero"], "wallboxes")

        assert {j.id: j.next_run_time for j in scheduler._scheduler.get_jobs()} == planned
        assert podero.faults.pending("wallbox") == 0  # the fault was served: the poll did run
    finally:
        await scheduler.stop(drain=1.0)


async def test_a_poll_that_crashes_is_logged_and_the_timetable_keeps_running(
    make_config, make_bridge, monkeypatch
):
    # The module's own logger, replaced: structlog caches loggers once configured, so a global
    # capture_logs() would miss it depending on test order.
    logs = LogCapture()
    monkeypatch.setattr(scheduler_module, "log", structlog.wrap_logger(None, processors=[logs]))
    bridge = await make_bridge(make_config(wallboxes=[]))
    scheduler = await _paused_scheduler(bridge)
    try:
        await scheduler._run(bridge.app[PROVIDERS]["podero"], "no-such-group")  # a bug: ValueError

        [crash] = [e for e in logs.entries if e["event"] == "poll.crashed"]
        assert (crash["provider"], crash["group"]) == ("podero", "no-such-group")
        assert scheduler.running
        assert not scheduler._in_flight
    finally:
        await scheduler.stop(drain=1.0)


class _NoJitter(random.Random):
    def uniform(self, a: float, b: float) -> float:
        return a


async def test_stop_cancels_a_poll_stuck_on_a_slow_provider_quietly(
    make_config, make_bridge, podero, monkeypatch, caplog
):
    logs = LogCapture()
    monkeypatch.setattr(scheduler_module, "log", structlog.wrap_logger(None, processors=[logs]))
    user = podero.add_user(email="a@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    podero.fail("wallbox", kind="slow", delay=3600, times=1000)  # it never answers within the test
    scheduler = PollScheduler(bridge.app[POLLER], list(bridge.app[PROVIDERS].values()), rng=_NoJitter())
    scheduler.start()
    for _ in range(200):  # bounded: until APScheduler has started the poll and it waits on the provider
        if podero.faults.pending("wallbox") < 1000:
            break
        await asyncio.sleep(0.01)
    assert podero.faults.pending("wallbox") < 1000

    await scheduler.stop(drain=3600.0)  # a long drain: the cancel ends the poll, not its timeout

    assert not scheduler.running
    assert not scheduler._in_flight
    # The wallboxes poll (the one stuck) says it was cancelled, once; the provider's other groups
    # (onboarding, heat pumps, …) have nothing to read and may have finished or been cancelled too.
    stuck = [
        e["event"] for e in logs.entries if e.get("group") == "wallboxes" and e["event"].startswith("poll.")
    ]
    assert stuck == ["poll.cancelled"]
    # APScheduler logs a job that raised (CancelledError included) with its traceback; none did.
    assert [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno >= 40] == []
