"""The status page shows what time windows deferred (#14): per channel, how many and until when."""

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
channels = ["partner"]
mute = [{ from = "22:00", to = "07:00", timezone = "Europe/Berlin" }]
"""


async def test_deferred_notifications_are_listed_with_when_they_go_out(
    make_config, make_bridge, podero, wallbox
):
    config = make_config(
        rules=RULES, wallboxes=[wallbox], server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN}
    )
    bridge = await make_bridge(config)
    await bridge.poll()
    await sign_in(bridge.client)
    assert "Nothing is deferred." in await (await bridge.client.get("/")).text()
    bridge.clock.advance(timedelta(minutes=5))  # 22:05 in Berlin
    podero.update_wallbox(wallbox["wallbox_id"], is_plugged_in=True, is_charging=True)
    await bridge.poll()

    page = await (await bridge.client.get("/")).text()

    section = page.split('id="deferred"')[1].split("</section>")[0]
    assert "<code>partner</code>" in section
    assert "<td>1</td>" in section
    assert "2026-11-23 06:00:00Z (one digest" in section  # 07:00 in Berlin
