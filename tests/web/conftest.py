"""A real bridge with an admin token and a delivery dead-lettered against the verifying webhook sink."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest

from bridge.model import Delivery
from tests.conftest import Bridge

ADMIN_TOKEN = "status-page-test-token-4f9c2b7e1d"
WB = "00000000-0000-4000-8000-0000000000c7"
CSRF = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@dataclass
class DeadLetter:
    bridge: Bridge
    delivery: Delivery


@pytest.fixture
def wallbox(podero) -> dict[str, str]:
    user = podero.add_user(email="grace@example.com")
    wallbox_id = podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    return {"user_id": user, "wallbox_id": wallbox_id}


@pytest.fixture
async def dead_letter(make_config, make_bridge, podero, sink, wallbox) -> DeadLetter:
    """The partner's receiver answered 500 to the only attempt its schedule allows: the delivery is dead."""
    config = make_config(wallboxes=[wallbox], server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN})
    channels = dict(config.channels)
    channels["partner"] = channels["partner"].model_copy(update={"retry": [timedelta(0)]})
    bridge = await make_bridge(config.model_copy(update={"channels": channels}))
    await bridge.poll()  # baseline
    sink.respond_with(500)
    podero.update_wallbox(WB, is_charging=True, charge_rate_w=7200)
    bridge.clock.advance(timedelta(seconds=60))
    assert (await bridge.poll()).events == 1
    await sink.wait_for(1)
    await bridge.deliver()
    [dead] = await bridge.store.list_deliveries(status="dead")
    assert (dead.attempts, dead.last_error) == (1, "HTTP 500")
    return DeadLetter(bridge=bridge, delivery=dead)
