"""The status page's Firing section (#14): an open firing shows whether a time window defers its
notifications, who snoozed it until when, and who acknowledged it when."""

from __future__ import annotations

from datetime import timedelta

from tests.web.conftest import ADMIN_TOKEN
from tests.web.test_status_page import sign_in

RULES = """
[[rule]]
id = "charging-at-night"
source = "podero.wallbox"
field = "is_charging"
to = true
repeat = "1h"
channels = ["partner"]
mute = [{ from = "22:00", to = "07:00", timezone = "Europe/Berlin" }]
"""


def firings(page: str) -> str:
    return page.split('id="firings"')[1].split("</section>")[0]


async def test_a_firing_shows_deferred_then_snoozed_then_acknowledged(
    make_config, make_bridge, podero, wallbox
):
    config = make_config(
        rules=RULES, wallboxes=[wallbox], server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN}
    )
    bridge = await make_bridge(config)
    await bridge.poll()
    await sign_in(bridge.client)
    assert "Nothing is firing." in firings(await (await bridge.client.get("/")).text())
    bridge.clock.advance(timedelta(minutes=5))  # 22:05 in Berlin: muted
    podero.update_wallbox(wallbox["wallbox_id"], is_plugged_in=True, is_charging=True)
    await bridge.poll()

    section = firings(await (await bridge.client.get("/")).text())
    assert "<code>charging-at-night</code>" in section
    assert "deferred until 2026-11-23 06:00:00Z (time window)" in section

    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    body = {"rule": "charging-at-night", "resource_id": wallbox["wallbox_id"], "by": "bo"}
    snoozed = await bridge.client.post(
        "/api/acks", json={**body, "action": "snooze", "duration": "4h"}, headers=headers
    )
    assert snoozed.status == 201
    section = firings(await (await bridge.client.get("/")).text())
    assert "snoozed by bo until 2026-11-23 01:05:00Z" in section

    acked = await bridge.client.post("/api/acks", json={**body, "by": "ada <script>"}, headers=headers)
    assert acked.status == 201
    section = firings(await (await bridge.client.get("/")).text())
    assert "acknowledged by <strong>ada &lt;script&gt;</strong>" in section
    again = await bridge.client.post("/api/acks", json=body, headers=headers)
    assert again.status == 409
    assert "already acknowledged by ada <script>" in (await again.json())["detail"]
