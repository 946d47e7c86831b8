"""Fetch workers (`fetch_workers = N`): by-id polls read in other processes give the same outcome as
in the main process; only what changed comes back; a worker that dies fails one poll, never a change.

These start real worker processes (spawned), which poll the real Podero simulator over loopback."""

from __future__ import annotations

import os
import signal

import orjson
import pytest

from bridge.clock import SystemClock
from bridge.poll.fetch_pool import FetchPool, share
from bridge.store.sqlite import SqliteStore
from tests.conftest import podero_poller, wallbox_key

WALLBOXES = 12


@pytest.fixture
async def pooled(tmp_path, make_config, podero):
    """A poller whose Podero wallboxes are read by two worker processes."""
    user = podero.add_user(email="pool@example.com")
    boxes = [podero.add_wallbox(user) for _ in range(WALLBOXES)]
    config = make_config(wallboxes=[{"user_id": user, "wallbox_id": b} for b in boxes])
    config = config.model_copy(
        update={"providers": {"podero": config.providers["podero"].model_copy(update={"fetch_workers": 2})}}
    )
    clock = SystemClock()  # the workers run on the real clock: the main process must too
    store = SqliteStore(tmp_path / "pool.db")
    await store.open()
    pool = FetchPool("podero", config.providers["podero"], workers=2, secrets=config.secret_values())
    async with podero_poller(config, store, clock, fetch_pools={"podero": pool}) as (poller, provider):
        yield poller, provider, store, boxes, pool
    await pool.close()
    await store.close()


async def test_workers_baseline_then_report_only_the_one_wallbox_that_changed(pooled, podero):
    poller, provider, store, boxes, _ = pooled

    baseline = await poller.poll(provider, "wallboxes")
    podero.update_wallbox(boxes[3], is_plugged_in=True, is_charging=True, charge_rate_w=7200.0)
    changed = await poller.poll(provider, "wallboxes")
    quiet = await poller.poll(provider, "wallboxes")

    assert (baseline.ok, baseline.observed, baseline.changed, baseline.events) == (
        True,
        WALLBOXES,
        WALLBOXES,
        0,
    )
    assert (changed.ok, changed.observed, changed.changed, changed.events) == (True, WALLBOXES, 1, 1)
    assert (quiet.ok, quiet.observed, quiet.changed, quiet.events) == (True, WALLBOXES, 0, 0)
    snapshot = await store.get_snapshot(wallbox_key(boxes[3]))
    assert snapshot is not None
    assert snapshot.state is not None
    assert snapshot.state["is_charging"] is True
    assert snapshot.sequence == 1
    events = await store.list_events(limit=10)
    assert [(e.rule_id, e.key.resource_id) for e in events] == [("charging-started", boxes[3])]


async def test_a_body_that_violates_the_schema_in_a_worker_is_a_failed_read(pooled, podero):
    poller, provider, store, boxes, _ = pooled
    body = podero.wallbox(boxes[0])
    del body["owner"]
    podero.fail("wallbox", status=200, body=orjson.dumps(body), times=WALLBOXES)

    summary = await poller.poll(provider, "wallboxes")

    assert (summary.ok, summary.observed, summary.failed) == (False, 0, WALLBOXES)
    assert "at owner: Field required" in str(poller.health.get("podero").as_state()["last_error"])
    assert all([await store.get_snapshot(wallbox_key(b)) is None for b in boxes])


async def test_a_killed_worker_fails_one_poll_and_the_change_arrives_once_on_the_next(pooled, podero):
    poller, provider, store, boxes, pool = pooled
    await poller.poll(provider, "wallboxes")  # the baseline; the workers are running now
    podero.update_wallbox(boxes[5], is_plugged_in=True, is_charging=True, charge_rate_w=7200.0)
    for pid in list(pool._executor._processes):  # what the OOM killer would do
        os.kill(pid, signal.SIGKILL)

    failed = await poller.poll(provider, "wallboxes")
    recovered = await poller.poll(provider, "wallboxes")

    assert failed.ok is False
    assert "a fetch worker exited unexpectedly" in str(poller.health.get("podero").as_state()["last_error"])
    assert (failed.changed, failed.events) == (0, 0)
    assert (recovered.ok, recovered.observed, recovered.events) == (True, WALLBOXES, 1)
    snapshot = await store.get_snapshot(wallbox_key(boxes[5]))
    assert snapshot is not None
    assert snapshot.sequence == 1


def test_workers_share_the_rate_limit_and_the_concurrency(make_config):
    cfg = (
        make_config()
        .providers["podero"]
        .model_copy(update={"max_requests_per_second": 90.0, "max_concurrency": 5, "fetch_workers": 3})
    )

    each = share(cfg, 3)

    assert (each.max_requests_per_second, each.max_concurrency, each.fetch_workers) == (30.0, 1, 0)


async def test_a_wallbox_failing_in_a_worker_backs_off_alone_in_the_main_process(pooled, podero):
    # The back-off is decided where the results come back (#18): a worker's failure counts the same.
    poller, provider, _, boxes, _ = pooled
    bad = boxes[5]
    await poller.poll(provider, "wallboxes")
    podero.fail("wallbox", status=500, times=None, resource=bad)
    asked_before = [p for _, p in podero.requests]

    first = await poller.poll(provider, "wallboxes")
    second = await poller.poll(provider, "wallboxes")  # within half an interval: bad is not asked

    asked = [p for _, p in podero.requests][len(asked_before) :]
    assert (first.failed, first.observed, first.skipped) == (1, WALLBOXES - 1, 0)
    assert (second.failed, second.observed, second.skipped) == (0, WALLBOXES - 1, 1)
    assert sum(p.endswith(f"/wallboxes/{bad}") for p in asked) == 1
    assert all(sum(p.endswith(f"/wallboxes/{b}") for p in asked) == 2 for b in boxes if b != bad)
    assert poller.health.get("podero").status == "degraded"
