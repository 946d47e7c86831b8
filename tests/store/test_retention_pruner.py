"""The retention pruner on a live bridge (#14): after their ages, events, finished deliveries with
their attempts, and traces are gone; younger ones stay; deletes come in small batches. On the
injected clock; `[retention]` keys are checked at FILE:LINE."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.config.models import RetentionConfig
from bridge.errors import ConfigError
from bridge.store.retention import Pruner

WB = "00000000-0000-4000-8000-0000000000f1"


@pytest.fixture
def wallbox(podero):
    user = podero.add_user(email="ada@example.com")
    return {"user_id": user, "wallbox_id": podero.add_wallbox(user, wallbox_id=WB)}


async def test_history_goes_after_its_age_in_small_batches_and_owed_work_stays(
    make_config, make_bridge, podero, wallbox, sink
):
    bridge = await make_bridge(make_config(wallboxes=[wallbox]))
    await bridge.poll()  # baseline
    for _ in range(3):  # three charging sessions: events, deliveries, attempts, traces
        bridge.clock.advance(timedelta(minutes=1))
        podero.update_wallbox(WB, is_plugged_in=True, is_charging=True)
        await bridge.poll()
        bridge.clock.advance(timedelta(minutes=1))
        podero.update_wallbox(WB, is_charging=False)
        await bridge.poll()
    await bridge.deliver()
    await sink.wait_for(3)
    before = await bridge.store.counts()
    assert (before.events, before.deliveries, before.attempts) == (3, 3, 3)
    assert before.traces == 6
    pruner = Pruner(bridge.store, RetentionConfig(batch=2), clock=bridge.clock)

    assert await pruner.run_once() == dict.fromkeys(["traces", "attempts", "deliveries", "events"], 0)
    bridge.clock.advance(timedelta(days=8))  # traces are kept 7 days by default
    assert (await pruner.run_once())["traces"] == 6
    bridge.clock.advance(timedelta(days=23))  # events and deliveries: 30 days
    podero.add_action(WB, code="reauthenticate")  # a new notification: young, so kept
    await bridge.poll()
    batches = pruner.batches
    gone = await pruner.run_once()

    assert gone == {"traces": 0, "attempts": 3, "deliveries": 3, "events": 3}
    assert pruner.batches - batches == 1 + 2 + 2 + 2  # 3 rows in batches of 2 take two deletes each
    after = await bridge.store.counts()
    assert (after.events, after.deliveries) == (1, 2)  # the new event, to its two channels
    # (pending and held work older than its age is kept too: tests/store/test_traces_and_retention.py)


def test_a_bad_retention_key_is_refused_at_its_line(tmp_path):
    from bridge.config.loader import load_config

    path = tmp_path / "config.toml"
    path.write_text('[retention]\nevents = "30d"\ntraces = "-1d"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    [problem] = caught.value.problems
    assert (problem.line, problem.key) == (3, "retention.traces")
