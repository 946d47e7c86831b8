"""The published payload contracts hold for what a real receiver gets: every webhook the bridge
delivered to the aiohttp sink validates against the JSON Schema `/api/schemas/{type}` serves, and
against the OpenAPI document's `webhooks` entry for its type."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from jsonschema import Draft202012Validator, ValidationError

from bridge.app_keys import RULEBOOK
from bridge.channels.base import RenderContext
from bridge.channels.webhook import WebhookChannel
from bridge.config.models import WebhookChannelConfig
from bridge.contracts.samples import channel_test_event, sample_event
from bridge.contracts.schemas import schema_document
from bridge.model import Delivery
from tests.conftest import DEFAULT_RULES, WEBHOOK_SECRET

RULES = (
    DEFAULT_RULES
    + """
[[rule]]
id = "provider-down"
source = "bridge.provider"
field = "status"
to = "down"
type = "provider.down"
channels = ["partner"]

[[rule]]
id = "wallbox-gone"
source = "podero.wallbox"
event = "disappeared"
type = "wallbox.gone"
channels = ["partner"]
"""
)


def validator(schema: dict[str, Any]) -> Draft202012Validator:
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


async def get_json(bridge, path: str, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    resp = await bridge.client.get(path, headers=headers)
    assert resp.status == status, await resp.text()
    return await resp.json()


@pytest.fixture
async def bridge(make_config, make_bridge, podero):
    user = podero.add_user(email="ada@example.com", first_name="Ada")
    wb = podero.add_wallbox(user, is_plugged_in=True)
    b = await make_bridge(make_config(rules=RULES, wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    b.wallbox = wb  # type: ignore[attr-defined]
    await b.poll()  # baseline
    return b


async def deliver_every_kind(bridge, podero, sink) -> list[Any]:
    """A charging start, an action needed, the provider going down, a wallbox vanishing."""
    podero.update_wallbox(bridge.wallbox, is_charging=True, charge_rate_w=7200)
    podero.add_action(bridge.wallbox, code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    podero.fail("wallbox", status=503, times=5)
    for _ in range(5):
        bridge.clock.advance(timedelta(seconds=60))
        await bridge.poll()
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()  # recovered
    podero.soft_delete_wallbox(bridge.wallbox)
    await bridge.deliver()
    return [r.json for r in sink.verified]


async def test_every_delivered_webhook_validates_against_its_types_served_schema(bridge, podero, sink):
    bodies = await deliver_every_kind(bridge, podero, sink)
    types = {b["type"] for b in bodies}
    assert {"wallbox.charging_started", "wallbox.action_needed", "provider.down"} <= types
    for body in bodies:
        schema = await get_json(bridge, f"/api/schemas/{body['type']}")
        validator(schema).validate(body)


async def test_a_schema_rejects_a_body_that_breaks_the_contract(bridge, podero, sink):
    bodies = await deliver_every_kind(bridge, podero, sink)
    body = next(b for b in bodies if b["type"] == "wallbox.charging_started")
    check = validator(await get_json(bridge, "/api/schemas/wallbox.charging_started"))
    for breakage in ("extra_key", "no_sequence", "bad_status", "wrong_source", "state_without_owner"):
        broken = copy.deepcopy(body)
        if breakage == "extra_key":
            broken["data"]["surprise"] = 1
        elif breakage == "no_sequence":
            del broken["data"]["sequence"]
        elif breakage == "bad_status":
            broken["data"]["status"] = "maybe"
        elif breakage == "wrong_source":
            broken["data"]["source"] = "wattshift.onboarding"
        else:
            del broken["data"]["state"]["owner"]
        with pytest.raises(ValidationError):
            check.validate(broken)


async def test_the_openapi_document_has_a_webhook_per_event_type_whose_schema_the_bodies_meet(
    bridge, podero, sink
):
    bodies = await deliver_every_kind(bridge, podero, sink)
    doc = await get_json(bridge, "/api/openapi.json")
    listed = await get_json(bridge, "/api/schemas")
    assert set(doc["webhooks"]) == {item["type"] for item in listed["items"]}
    for body in bodies:
        ref = doc["webhooks"][body["type"]]["post"]["requestBody"]["content"]["application/json"]["schema"]
        # The document as the root, so `#/components/schemas/…` refs resolve inside it.
        validator({**ref, "components": doc["components"]}).validate(body)


async def test_the_schema_list_names_each_rules_type_with_its_sources_and_the_built_ins(bridge):
    listed = await get_json(bridge, "/api/schemas")
    by_type = {item["type"]: item for item in listed["items"]}
    assert by_type["wallbox.charging_started"]["sources"] == ["podero.wallbox"]
    assert by_type["provider.down"]["sources"] == ["bridge.provider"]
    assert by_type["wattbridge.digest"]["url"] == "/api/schemas/wattbridge.digest"
    assert "wattbridge.test" in by_type
    unknown = await get_json(bridge, "/api/schemas/no.such.type", status=404)
    assert unknown["error"] == "no such event type"
    assert "wallbox.charging_started" in unknown["detail"]


async def test_a_webhook_digest_validates_against_the_digest_schema(make_config, make_bridge, podero, sink):
    user = podero.add_user(email="ada@example.com")
    boxes = [podero.add_wallbox(user, is_plugged_in=True) for _ in range(3)]
    channels = {
        "partner": {"kind": "webhook", "url": sink.url, "secret": WEBHOOK_SECRET, "group_by": ["rule"]},
        "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
    }
    config = make_config(wallboxes=[{"user_id": user, "wallbox_id": b} for b in boxes], channels=channels)
    bridge = await make_bridge(config)
    await bridge.poll()
    for b in boxes:
        podero.update_wallbox(b, is_charging=True)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    bridge.clock.advance(timedelta(seconds=30))
    assert await bridge.digest() == 1
    await bridge.deliver()
    [digest] = await sink.wait_for(1)
    assert digest.json["type"] == "wattbridge.digest"
    assert digest.json["data"]["count"] == 3
    validator(await get_json(bridge, "/api/schemas/wattbridge.digest")).validate(digest.json)


async def test_the_channel_test_notification_validates_against_its_schema(bridge, sink):
    schema = await get_json(bridge, "/api/schemas/wattbridge.test")
    cfg = WebhookChannelConfig(kind="webhook", url=sink.url, secret=WEBHOOK_SECRET)
    event = channel_test_event("partner")
    async with aiohttp.ClientSession() as session:
        channel = WebhookChannel("partner", cfg, session=session, clock=bridge.clock)
        body = channel.render(event, RenderContext(old=None))
        result = await channel.send(
            Delivery(
                id="msg_t",
                event_id=event.id,
                channel="partner",
                body=body,
                next_attempt_at=event.occurred_at,
                created_at=event.occurred_at,
            )
        )
    assert result.ok, result.error
    [received] = await sink.wait_for(1)
    validator(schema).validate(received.json)


async def test_a_rule_reload_that_adds_a_type_adds_its_schema_and_webhook(bridge, tmp_path):
    before = await get_json(bridge, "/api/openapi.json")
    assert "wallbox.unplugged" not in before["webhooks"]
    await get_json(bridge, "/api/schemas/wallbox.unplugged", status=404)
    with (tmp_path / "rules" / "more.toml").open("w") as f:
        f.write(
            '[[rule]]\nid = "unplugged"\nsource = "podero.wallbox"\nfield = "is_plugged_in"\nto = false\n'
            'type = "wallbox.unplugged"\nchannels = ["partner"]\n'
        )
    assert bridge.app[RULEBOOK].reload() is None
    after = await get_json(bridge, "/api/openapi.json")
    assert "wallbox.unplugged" in after["webhooks"]
    schema = await get_json(bridge, "/api/schemas/wallbox.unplugged")
    assert schema["properties"]["type"]["const"] == "wallbox.unplugged"


@pytest.mark.parametrize(
    "source",
    [
        "podero.wallbox",
        "podero.onboarding_session",
        "realto.guided_onboarding_session",
        "wattshift.onboarding",
        "bridge.provider",
        "bridge.channel",
    ],
)
async def test_every_sources_state_as_its_simulator_serves_it_meets_the_schema_when_delivered(
    sink, clock, source
):
    event = sample_event(source, event_type="any.type")
    cfg = WebhookChannelConfig(kind="webhook", url=sink.url, secret=WEBHOOK_SECRET)
    async with aiohttp.ClientSession() as session:
        channel = WebhookChannel("partner", cfg, session=session, clock=clock)  # the sink's clock
        body = channel.render(event, RenderContext(old=None))
        result = await channel.send(
            Delivery(id=f"msg_{source}", event_id=event.id, channel="partner", body=body,
                     next_attempt_at=event.occurred_at, created_at=event.occurred_at)
        )  # fmt: skip
    assert result.ok, result.error
    [received] = await sink.wait_for(1)
    check = validator(schema_document("any.type", (source,)))
    check.validate(received.json)
    # The same body claimed for another source is refused: `data.source` keys the state's schema.
    other = "bridge.channel" if source != "bridge.channel" else "bridge.provider"
    with pytest.raises(ValidationError):
        validator(schema_document("any.type", (other,))).validate(received.json)


ACK_RULE = """
[[rule]]
id = "action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
repeat = "15m"
resolve = true
type = "wallbox.action_needed"
channels = ["partner"]
escalate = [{after = "30m", channels = ["oncall"]}]
"""


async def test_links_and_escalation_steps_meet_the_schema_and_a_broken_link_object_does_not(
    make_config, make_bridge, podero, sink
):
    """#14: the envelope grows `data.links` and `data.escalation` compatibly (optional keys)."""
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user)
    hook = {"kind": "webhook", "secret": WEBHOOK_SECRET}
    config = make_config(
        rules=ACK_RULE,
        wallboxes=[{"user_id": user, "wallbox_id": wb}],
        server={"listen": "127.0.0.1:0", "admin_token": "t" * 24, "public_url": "https://b.example.com"},
        channels={
            "partner": {**hook, "url": sink.url},
            "oncall": {**hook, "url": sink.url.replace("partner", "oncall")},
        },
    )
    bridge = await make_bridge(config)
    await bridge.poll()
    podero.add_action(wb, code="reauthenticate")
    await bridge.poll()
    for _ in range(31):
        bridge.clock.advance(timedelta(minutes=1))
        await bridge.tick()
    podero.resolve_action(wb, "reauthenticate")
    await bridge.poll()
    await bridge.deliver()
    bodies = {
        (r.name, r.json["data"].get("escalation"), r.json["data"]["status"]): r.json for r in sink.verified
    }
    check = validator(await get_json(bridge, "/api/schemas/wallbox.action_needed"))
    for body in bodies.values():
        check.validate(body)
    assert "links" in bodies[("partner", None, "firing")]["data"]
    assert "links" in bodies[("oncall", 1, "firing")]["data"]
    assert "links" not in bodies[("partner", None, "resolved")]["data"]
    broken = copy.deepcopy(bodies[("partner", None, "firing")])
    del broken["data"]["links"]["acknowledge"]
    with pytest.raises(ValidationError):
        check.validate(broken)
