"""`GET /api/rules` shows the #14 timing keys: escalating `repeat` steps, `repeat = "never"` and
`stale_after`, in seconds."""

from __future__ import annotations

from tests.poll.test_stale import QUIET
from tests.web.conftest import ADMIN_TOKEN

ESCALATING = """
[[rule]]
id = "escalating"
source = "podero.wallbox"
field = "action_needed"
to = true
repeat = ["15m", "1h"]
channels = ["partner"]

[[rule]]
id = "once"
source = "podero.wallbox"
field = "action_needed"
to = true
repeat = "never"
channels = ["partner"]
"""


async def test_the_rules_api_lists_repeat_steps_never_and_stale_after(make_config, make_bridge):
    config = make_config(
        rules=ESCALATING + QUIET, server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN}
    )
    bridge = await make_bridge(config)
    resp = await bridge.client.get("/api/rules", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert resp.status == 200
    rules = {r["id"]: r for r in (await resp.json())["items"]}

    assert (rules["escalating"]["repeat_s"], rules["escalating"]["repeat_steps_s"]) == (
        900.0,
        [900.0, 3600.0],
    )
    assert (rules["once"]["repeat_never"], rules["once"]["repeat_s"]) == (True, None)
    assert rules["wallbox-quiet"]["stale_after_s"] == 6 * 3600
    assert rules["escalating"]["stale_after_s"] is None
