"""The timer loop ends holds and sends reminders between polls, by itself, until stopped."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bridge.app_keys import DIGESTER, POLLER
from bridge.poll.timers import timer_loop

HELD = """
[[rule]]
id = "action-needed-held"
source = "podero.wallbox"
field = "action_needed"
to = true
for = "2m"
type = "wallbox.action_needed"
channels = ["partner"]
"""


async def test_the_loop_fires_a_hold_once_it_is_due_and_stops_when_told(
    make_config, make_bridge, podero, sink
):
    user = podero.add_user(email="grace@example.com")
    wb = podero.add_wallbox(user)
    bridge = await make_bridge(make_config(rules=HELD, wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    await bridge.poll()  # baseline
    podero.add_action(wb)
    await bridge.poll()  # the hold starts
    assert bridge.app[POLLER].next_due() == bridge.clock.now() + timedelta(minutes=2)

    stop = asyncio.Event()
    loop = asyncio.create_task(timer_loop(bridge.app[POLLER], bridge.app[DIGESTER], every=0.01)(stop))
    try:
        await asyncio.sleep(0.05)  # a few ticks while nothing is due yet
        assert sink.received == []
        bridge.clock.advance(timedelta(minutes=2))
        [hook] = await sink.wait_for(1)  # the loop ended the hold; the outbox sent it
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)

    assert hook.json["type"] == "wallbox.action_needed"
    assert bridge.app[POLLER].next_due() is None
    assert loop.done()
