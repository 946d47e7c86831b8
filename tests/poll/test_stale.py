"""Stale devices (#14 item 1) end to end on the injected clock: a wallbox whose reported timestamp
(`current_state_last_updated_at`) stops moving, or which cannot be read at all, fires once after
`stale_after`, stays quiet while it stays stale, resolves when it reports again, and its timer
survives a restart; a healthy neighbour never fires."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

WB = "00000000-0000-4000-8000-0000000000e1"
OK = "00000000-0000-4000-8000-0000000000e2"

QUIET = """
[[rule]]
id = "wallbox-quiet"
source = "podero.wallbox"
field = "current_state_last_updated_at"
stale_after = "6h"
resolve = true
type = "wallbox.quiet"
channels = ["partner"]
"""

UNREAD = """
[[rule]]
id = "wallbox-unread"
source = "podero.wallbox"
stale_after = "2h"
resolve = true
type = "wallbox.unread"
channels = ["partner"]
"""


@pytest.fixture
def wallboxes(podero):
    user = podero.add_user(email="grace@example.com")
    podero.add_wallbox(user, wallbox_id=WB)
    podero.add_wallbox(user, wallbox_id=OK)
    return [{"user_id": user, "wallbox_id": WB}, {"user_id": user, "wallbox_id": OK}]


async def run_for(bridge, minutes: int, *, every: int = 30) -> None:
    """Poll every `every` minutes and tick the timers every minute, as the scheduler would; what
    that queued is delivered before the clock moves on (a send signed before a jump of the test's
    clock would reach the sink outside its timestamp window: a 400, which no real clock makes)."""
    for minute in range(1, minutes + 1):
        bridge.clock.advance(timedelta(minutes=1))
        if minute % every == 0:
            await bridge.poll()
        if await bridge.tick() or minute % every == 0:
            await bridge.deliver()


def story(sink, start) -> list[tuple[int, str, str]]:
    """(hours since start, rule, status) of each notification."""
    out = []
    for h in sink.received:
        data = h.json["data"]
        at = datetime.fromisoformat(h.json["timestamp"]) - start
        out.append((round(at / timedelta(hours=1), 1), data["rule"], data["status"], data["resource_id"]))
    return [(at, rule, status) for at, rule, status, rid in out if rid == WB] + [
        ("healthy neighbour fired", rule, status) for _, rule, status, rid in out if rid != WB
    ]


async def test_a_quiet_timestamp_fires_once_after_stale_after_and_resolves_when_it_reports(
    store_cfg, make_config, make_bridge, podero, sink, wallboxes
):
    bridge = await make_bridge(make_config(rules=QUIET, wallboxes=wallboxes, **store_cfg))
    start = bridge.clock.now()
    await bridge.poll()  # baseline: the timers are armed at each wallbox's reported time
    await run_for(bridge, 60)
    podero.go_quiet(WB)  # from 1 h on, Podero serves WB with its last timestamp
    await run_for(bridge, 6 * 60 - 1)  # 6 h 59 m: not yet 6 h since it last reported at 1 h
    assert sink.received == []
    await run_for(bridge, 3 * 60)  # fires at 7 h, once, however long it stays quiet
    podero.go_quiet(WB, False)
    await run_for(bridge, 30)  # the next poll sees a fresh timestamp: resolved
    await sink.wait_for(2)

    assert story(sink, start) == [(7.0, "wallbox-quiet", "firing"), (10.5, "wallbox-quiet", "resolved")]
    assert sink.received[0].json["type"] == "wallbox.quiet"


async def test_a_stale_timer_survives_a_restart_and_fires_once(
    store_cfg, make_config, make_bridge, podero, sink, wallboxes
):
    config = make_config(rules=QUIET, wallboxes=wallboxes, **store_cfg)
    bridge = await make_bridge(config)
    start = bridge.clock.now()
    await bridge.poll()
    podero.go_quiet(WB)
    await run_for(bridge, 3 * 60)
    await bridge.client.close()  # stopped 3 h into the silence

    restarted = await make_bridge(config)  # same store; the armed timers are read back
    await run_for(restarted, 4 * 60)
    await run_for(restarted, 60)
    await sink.wait_for(1)

    assert story(sink, start) == [(6.0, "wallbox-quiet", "firing")]


async def test_no_successful_read_for_stale_after_fires_and_a_read_resolves(
    make_config, make_bridge, podero, sink, wallboxes
):
    bridge = await make_bridge(make_config(rules=UNREAD, wallboxes=wallboxes))
    start = bridge.clock.now()
    await bridge.poll()
    await run_for(bridge, 60)
    podero.fail("wallbox", status=503, times=None, resource=WB)  # every read of WB fails from 1 h
    await run_for(bridge, 119)
    assert sink.received == []
    await run_for(bridge, 3 * 60)  # 2 h after its last read (at 1 h): fires at 3 h, once
    podero.faults.clear()
    await run_for(bridge, 4 * 60)  # the next successful read (when its jittered back-off lets one
    await sink.wait_for(2)  # through) resolves

    [(fired_at, rule, firing), (resolved_at, _, resolved)] = story(sink, start)
    assert (fired_at, rule, firing, resolved) == (3.0, "wallbox-unread", "firing", "resolved")
    assert 6.0 < resolved_at <= 10.0
