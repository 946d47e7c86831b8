"""Email digests end to end: five wallboxes needing action at once give five webhooks but one email
listing all five; what fires within `group_interval` of that digest waits for the next one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import WEBHOOK_SECRET

RULES = """
[[rule]]
id = "wallbox-action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
type = "wallbox.action_needed"
channels = ["partner", "ops"]

[rule.email]
subject = "Wallbox {{ event.resource_id[-4:] }} needs action"
"""


@pytest.fixture
def wallboxes(podero):
    user = podero.add_user(email="ops-digest@example.com")
    return [
        {
            "user_id": user,
            "wallbox_id": podero.add_wallbox(user, wallbox_id=f"00000000-0000-4000-8000-00000000d00{i}"),
        }
        for i in range(7)
    ]


@pytest.fixture
async def bridge(make_config, make_bridge, wallboxes, sink, mailbox):
    channels = {
        "partner": {"kind": "webhook", "url": sink.url, "secret": WEBHOOK_SECRET},
        "ops": {
            "kind": "email",
            "to": ["ops@example.com"],
            "from": "wattbridge@example.com",
            "group_by": ["rule"],
            "group_wait": "30s",
            "group_interval": "10m",
        },
    }
    b = await make_bridge(make_config(rules=RULES, wallboxes=wallboxes, channels=channels))
    await b.poll()  # baseline
    return b


async def test_what_fires_together_is_one_email_and_webhooks_stay_one_per_event(
    bridge, podero, wallboxes, sink, mailbox
):
    for wb in wallboxes[:5]:
        podero.add_action(wb["wallbox_id"], code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()
    await sink.wait_for(5)
    assert await bridge.digest() == 0  # the group has waited 0 s of its 30 s
    assert mailbox.messages == []

    bridge.clock.advance(timedelta(seconds=30))
    assert await bridge.digest() == 1
    await bridge.deliver()
    [message] = await mailbox.wait_for(1)

    assert len(sink.received) == 5
    assert str(message["Subject"]).endswith("5 notifications: " + "Wallbox d000 needs action and 4 more")
    text = message.get_content()
    for i in range(5):
        assert f"Wallbox d00{i} needs action" in text
    assert {d.status for d in await bridge.store.list_deliveries(channel="ops", limit=10)} == {
        "digested",
        "delivered",
    }


async def test_a_group_waits_group_interval_after_its_previous_digest(bridge, podero, wallboxes, mailbox):
    podero.add_action(wallboxes[0]["wallbox_id"], code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    bridge.clock.advance(timedelta(seconds=30))
    assert await bridge.digest() == 1
    # Let the first digest's send finish before the clock jumps past its lease: a send still in
    # flight on a loaded machine would otherwise be claimed, and sent, a second time.
    await bridge.deliver()

    for wb in wallboxes[1:3]:
        podero.add_action(wb["wallbox_id"], code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    bridge.clock.advance(timedelta(minutes=5))
    assert await bridge.digest() == 0  # 6 min after the first digest: interval is 10 min
    bridge.clock.advance(timedelta(minutes=4))
    assert await bridge.digest() == 1
    await bridge.deliver()
    first, second = await mailbox.wait_for(2)

    assert "needs action" in str(first["Subject"])
    assert "2 notifications" in str(second["Subject"])
    assert first["Message-ID"] != second["Message-ID"]
