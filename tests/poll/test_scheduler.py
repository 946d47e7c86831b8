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
from bridge.poll.scheduler import MAX_FIRST_RUN_JITTER, PollScheduler, job_id


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


class _LatestFirstRun(random.Random):
    """Jitter at its maximum, so no job runs by itself while a test drives `_run`."""

    def uniform(self, a: float, b: float) -> float:
        return b


async def _paused_scheduler(bridge) -> PollScheduler:
    scheduler = PollScheduler(bridge.app[POLLER], list(bridge.app[PROVIDERS].values()), rng=_LatestFirstRun())
    scheduler.start()
    scheduler._scheduler.pause()  # the timetable exists; only the test runs polls
    return scheduler


@pytest.mark.parametrize("status", [429, 503])
async def test_a_retry_after_pushes_back_only_that_groups_next_poll(make_config, make_bridge, podero, status):
    user = podero.add_user(email="a@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    scheduler = await _paused_scheduler(bridge)
    try:
        podero.fail("wallbox", status=status, headers={"Retry-After": "600"})
        provider = bridge.app[PROVIDERS]["podero"]
        before = datetime.now(UTC)

        await scheduler._run(provider, "wallboxes")

        jobs = {j.id: j for j in scheduler._scheduler.get_jobs()}
        assert jobs[job_id("podero", "wallboxes")].next_run_time >= before + timedelta(seconds=600)
        assert jobs[job_id("podero", "onboarding")].next_run_time <= datetime.now(UTC) + timedelta(seconds=60)
    finally:
        await scheduler.stop(drain=1.0)


async def test_a_retry_after_shorter_than_the_interval_does_not_bring_the_poll_forward(
    make_config, make_bridge, podero
):
    user = podero.add_user(email="a@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    scheduler = await _paused_scheduler(bridge)
    try:
        job = scheduler._scheduler.get_job(job_id("podero", "wallboxes"))
        planned = job.next_run_time
        podero.fail("wallbox", status=429, headers={"Retry-After": "1"})

        await scheduler._run(bridge.app[PROVIDERS]["podero"], "wallboxes")

        assert scheduler._scheduler.get_job(job_id("podero", "wallboxes")).next_run_time == planned
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
    assert [e["event"] for e in logs.entries if e["event"].startswith("poll.")] == ["poll.cancelled"]
    # APScheduler logs a job that raised (CancelledError included) with its traceback; none did.
    assert [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno >= 40] == []
