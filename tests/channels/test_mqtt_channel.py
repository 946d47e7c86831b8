"""The MQTT channel, end to end through the outbox against the real Mosquitto (WATTBRIDGE_TEST_MQTT).

A real subscriber checks what arrives: the topic (the channel's template or the rule's own), the
SPEC §6 envelope as payload, QoS 1, and the retained flag a late subscriber sees.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta

import aiomqtt
import orjson
import pytest

from bridge.channels.base import RenderContext
from bridge.channels.mqtt import MqttChannel, safe_topic
from bridge.clock import ManualClock
from bridge.config.models import MqttChannelConfig
from bridge.model import Delivery, Event, ResourceKey

MQTT = os.environ.get("WATTBRIDGE_TEST_MQTT")
NO_MQTT = "WATTBRIDGE_TEST_MQTT is unset (e.g. 127.0.0.1:1883, a Mosquitto broker): MQTT tests skipped"
WB = "00000000-0000-4000-8000-0000000000c1"


@pytest.fixture
def broker() -> tuple[str, int]:
    if not MQTT:
        pytest.skip(NO_MQTT)
    host, _, port = MQTT.rpartition(":")
    return host, int(port)


@pytest.fixture
def prefix() -> str:
    """A topic prefix of this test's own, so runs sharing the broker never see each other."""
    return f"wattbridge-test/{uuid.uuid4().hex}"


def rules(prefix: str) -> str:
    return f"""
[[rule]]
id = "charging-started"
source = "podero.wallbox"
field = "is_charging"
from = false
to = true
type = "wallbox.charging_started"
channels = ["ha"]

[[rule]]
id = "wallbox-action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
severity = "warning"
channels = ["ha"]

[rule.mqtt]
topic = "{prefix}/alerts/{{{{ event.resource_id }}}}/{{{{ new.actions[0].code }}}}"
"""


def mqtt_channel(broker: tuple[str, int], prefix: str, **extra: object) -> dict[str, object]:
    host, port = broker
    return {
        "kind": "mqtt",
        "host": host,
        "port": port,
        "topic": f"{prefix}/{{{{ event.source }}}}/{{{{ event.resource_id }}}}/{{{{ event.rule }}}}",
        **extra,
    }


async def next_message(client: aiomqtt.Client) -> aiomqtt.Message:
    async with asyncio.timeout(10):
        async for message in client.messages:
            return message
    raise AssertionError("the subscription ended without a message")


@pytest.fixture
async def wallbox(podero):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    return {"user_id": user, "wallbox_id": WB}


async def test_a_firing_rule_is_published_with_qos_1_on_the_channel_topic(
    broker, prefix, make_config, make_bridge, podero, wallbox
):
    config = make_config(
        rules=rules(prefix), wallboxes=[wallbox], channels={"ha": mqtt_channel(broker, prefix)}
    )
    bridge = await make_bridge(config)
    await bridge.poll()  # baseline
    async with aiomqtt.Client(*broker) as sub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        podero.update_wallbox(WB, is_charging=True)
        bridge.clock.advance(timedelta(seconds=60))
        await bridge.poll()
        await bridge.deliver()
        message = await next_message(sub)

    assert str(message.topic) == f"{prefix}/podero.wallbox/{WB}/charging-started"
    assert message.qos == 1
    assert message.retain is False  # live delivery to a subscriber; the channel does not retain
    assert isinstance(message.payload, bytes)
    body = orjson.loads(message.payload)
    assert body["type"] == "wallbox.charging_started"
    assert body["data"]["resource_id"] == WB
    assert body["data"]["status"] == "firing"
    assert {"field": "is_charging", "old": False, "new": True} in body["data"]["changes"]
    [delivery] = await bridge.store.list_deliveries(channel="ha")
    assert delivery.status == "delivered"
    [attempt] = await bridge.store.list_attempts(delivery.id)
    assert attempt.ok
    assert attempt.response_excerpt == f"published to {message.topic} (qos 1)"


async def test_a_retained_channel_leaves_the_state_for_a_late_subscriber_on_the_rules_topic(
    broker, prefix, make_config, make_bridge, podero, wallbox
):
    channel = mqtt_channel(broker, prefix, retain=True)
    config = make_config(rules=rules(prefix), wallboxes=[wallbox], channels={"ha": channel})
    bridge = await make_bridge(config)
    await bridge.poll()
    podero.add_action(WB, code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()
    topic = f"{prefix}/alerts/{WB}/reauthenticate"  # the rule's [rule.mqtt] topic, not the channel's
    try:
        # Subscribed only after the publish: only a retained message reaches this client.
        async with aiomqtt.Client(*broker) as late:
            await late.subscribe(f"{prefix}/#", qos=1)
            message = await next_message(late)
        assert str(message.topic) == topic
        assert message.retain is True
        assert message.qos == 1
        assert isinstance(message.payload, bytes)
        assert orjson.loads(message.payload)["data"]["rule"] == "wallbox-action-needed"
    finally:
        async with aiomqtt.Client(*broker) as cleaner:  # an empty retained message clears it
            await cleaner.publish(topic, b"", qos=1, retain=True)


async def test_an_unreachable_broker_leaves_the_delivery_pending_for_a_retry(
    broker, prefix, make_config, make_bridge, podero, wallbox
):
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    channel = mqtt_channel(("127.0.0.1", closed), prefix, timeout="2s")
    config = make_config(rules=rules(prefix), wallboxes=[wallbox], channels={"ha": channel})
    bridge = await make_bridge(config)
    await bridge.poll()
    podero.update_wallbox(WB, is_charging=True)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()

    [delivery] = await bridge.store.list_deliveries(channel="ha")
    assert delivery.status == "pending"  # retried on the schedule, not dead
    assert delivery.attempts == 1
    assert delivery.next_attempt_at > bridge.clock.now()
    [attempt] = await bridge.store.list_attempts(delivery.id)
    assert not attempt.ok
    assert attempt.error is not None
    assert attempt.error.startswith("MQTT")


def make_event(resource_id: str = WB) -> Event:
    return Event(
        id="evt_mqtt",
        rule_id="charging-started",
        type="wallbox.charging_started",
        status="firing",
        severity="info",
        key=ResourceKey(source="podero.wallbox", provider="podero", resource_id=resource_id),
        sequence=1,
        changes=(),
        state={"is_charging": True},
        occurred_at=datetime(2026, 11, 22, 21, 0, tzinfo=UTC),
    )


def delivery(body: bytes) -> Delivery:
    now = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    return Delivery(
        id="dlv_1", event_id="evt_mqtt", channel="ha", body=body, next_attempt_at=now, created_at=now
    )


def test_wildcards_in_a_rendered_topic_are_replaced_so_the_message_can_be_published():
    cfg = MqttChannelConfig.model_validate({"kind": "mqtt", "host": "127.0.0.1"})
    channel = MqttChannel("ha", cfg, clock=ManualClock())
    stored = orjson.loads(channel.render(make_event("box+1#a"), RenderContext(old=None)))
    assert stored["topic"] == "wattbridge/podero.wallbox/box_1_a/charging-started"
    assert safe_topic("  ", fallback="wattbridge") == "wattbridge"


async def test_a_stored_body_that_is_not_ours_is_a_dead_letter_at_once():
    cfg = MqttChannelConfig.model_validate({"kind": "mqtt", "host": "127.0.0.1"})
    channel = MqttChannel("ha", cfg, clock=ManualClock())
    result = await channel.send(delivery(b"not json"))
    assert not result.ok
    assert result.permanent
    assert result.error == "stored mqtt body is malformed: JSONDecodeError"


async def test_the_channel_reconnects_after_its_connection_was_closed(broker, prefix):
    cfg = MqttChannelConfig.model_validate(mqtt_channel(broker, prefix))
    channel = MqttChannel("ha", cfg, clock=ManualClock())
    body = channel.render(make_event(), RenderContext(old=None))
    async with aiomqtt.Client(*broker) as sub:
        await sub.subscribe(f"{prefix}/#", qos=1)
        try:
            assert (await channel.send(delivery(body))).ok
            await channel.close()  # as on shutdown; a later send opens a new connection
            assert (await channel.send(delivery(body))).ok
        finally:
            await channel.close()
        first, second = await next_message(sub), await next_message(sub)
    assert first.payload == second.payload  # the stored bytes, identical on every attempt


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        pytest.param({"ca_file": "/tmp/ca.pem"}, "need tls = true", id="ca-without-tls"),
        pytest.param({"tls": True, "cert_file": "/tmp/c.pem"}, "go together", id="cert-without-key"),
        pytest.param({"password": "pw"}, "password needs a username", id="password-without-user"),
        pytest.param({"topic": "{{ event.rule"}, "does not compile", id="broken-topic-template"),
    ],
)
def test_incoherent_mqtt_options_are_refused(extra, message):
    with pytest.raises(ValueError, match=message):
        MqttChannelConfig.model_validate({"kind": "mqtt", "host": "127.0.0.1", **extra})


async def test_a_missing_ca_file_is_a_retried_attempt_that_names_the_problem(tmp_path):
    cfg = MqttChannelConfig.model_validate(
        {"kind": "mqtt", "host": "127.0.0.1", "tls": True, "ca_file": str(tmp_path / "missing.pem")}
    )
    channel = MqttChannel("ha", cfg, clock=ManualClock())  # start-up does not read the file
    result = await channel.send(delivery(channel.render(make_event(), RenderContext(old=None))))
    assert not result.ok
    assert not result.permanent
    assert result.error is not None
    assert "FileNotFoundError" in result.error
