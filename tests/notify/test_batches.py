"""Email digests end to end: five wallboxes needing action at once give five webhooks but one email
listing all five; what fires within `group_interval` of that digest waits for the next one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

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
    # Sent before the clock jumps minutes ahead: a send still in flight when the manual clock passes
    # its lease would be claimed again (a test artefact; real time does not jump mid-send).
    await bridge.deliver()
    await mailbox.wait_for(1)

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


RULE_DIGEST_RULES = """
[[rule]]
id = "wallbox-action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
type = "wallbox.action_needed"
channels = ["partner", "ops"]
group_by = ["rule", "severity"]
group_wait = "2m"
group_interval = "1h"

[rule.email]
subject = "Wallbox {{ event.resource_id[-4:] }} needs action"

[[rule]]
id = "charging-started"
source = "podero.wallbox"
field = "is_charging"
from = false
to = true
channels = ["ops"]
"""


@pytest.fixture
async def rule_digest_bridge(make_config, make_bridge, wallboxes, sink, mailbox):
    # The ops channel itself does not group: only the rule asks for a digest.
    b = await make_bridge(make_config(rules=RULE_DIGEST_RULES, wallboxes=wallboxes))
    await b.poll()  # baseline
    return b


async def test_a_digest_on_a_rule_makes_n_resources_one_email_after_the_rules_group_wait(
    rule_digest_bridge, podero, wallboxes, sink, mailbox
):
    bridge = rule_digest_bridge
    for wb in wallboxes:
        podero.add_action(wb["wallbox_id"], code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()
    await sink.wait_for(len(wallboxes))  # webhooks: one per event, not digested
    bridge.clock.advance(timedelta(seconds=90))
    assert await bridge.digest() == 0  # 90 s of the rule's 2 min (a channel default would be 30 s)

    bridge.clock.advance(timedelta(seconds=30))
    assert await bridge.digest() == 1
    await bridge.deliver()
    [message] = await mailbox.wait_for(1)

    assert len(sink.received) == len(wallboxes)
    assert f"{len(wallboxes)} notifications" in str(message["Subject"])
    text = message.get_content()
    assert "rule=wallbox-action-needed, severity=info" in text
    for i in range(len(wallboxes)):
        assert f"Wallbox d00{i} needs action" in text


async def test_a_rule_without_a_digest_still_emails_once_per_event_on_the_same_channel(
    rule_digest_bridge, podero, wallboxes, mailbox
):
    bridge = rule_digest_bridge
    for wb in wallboxes[:2]:
        podero.update_wallbox(wb["wallbox_id"], is_plugged_in=True, is_charging=True)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()
    messages = await mailbox.wait_for(2)

    assert all("charging" in str(m["Subject"]) for m in messages)
    assert [d.status for d in await bridge.store.list_deliveries(channel="ops", limit=10)] == [
        "delivered",
        "delivered",
    ]


async def test_a_webhook_channel_that_asks_for_digests_gets_one_signed_digest_webhook(
    make_config, make_bridge, podero, wallboxes, sink, mailbox
):
    channels = {
        "partner": {
            "kind": "webhook",
            "url": sink.url,
            "secret": WEBHOOK_SECRET,
            "group_by": ["rule"],
            "group_wait": "30s",  # less than the delivery lease: see the interval test above
        },
        "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
    }
    bridge = await make_bridge(make_config(rules=RULES, wallboxes=wallboxes, channels=channels))
    await bridge.poll()  # baseline
    for wb in wallboxes[:4]:
        podero.add_action(wb["wallbox_id"], code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()
    await mailbox.wait_for(4)  # the email channel does not group: one email per event
    assert sink.received == []

    bridge.clock.advance(timedelta(seconds=30))
    assert await bridge.digest() == 1
    await bridge.deliver()
    [digest] = await sink.wait_for(1)

    assert digest.json["type"] == "wattbridge.digest"
    assert digest.json["data"]["group"] == {"rule": "wallbox-action-needed"}
    assert digest.json["data"]["count"] == 4
    events = digest.json["data"]["events"]
    assert [e["type"] for e in events] == ["wallbox.action_needed"] * 4
    assert sorted(e["data"]["resource_id"] for e in events) == sorted(w["wallbox_id"] for w in wallboxes[:4])
    assert len(mailbox.messages) == 4


def test_a_webhook_digest_cannot_be_combined_with_a_body_template(make_config, sink):
    channels = {
        "slack": {
            "kind": "webhook",
            "url": sink.url,
            "secret": WEBHOOK_SECRET,
            "group_by": ["rule"],
            "body_template": '{"text": "x"}',
        }
    }
    with pytest.raises(ValidationError, match="cannot be combined with body_template"):
        make_config(channels=channels)
