"""`wattbridge.flapping` (#14) in the event-type catalogue: listed on the sources of the rules that
have `flap` (and only then), served at `/api/schemas/wattbridge.flapping` and in the OpenAPI
document, and its schema insists on the `data.flap` summary."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from jsonschema import ValidationError

from bridge.contracts.schemas import event_types, schema_document
from bridge.notify.rulebook import load_for
from bridge.rules.flap import FLAPPING_TYPE
from tests.conftest import DEFAULT_RULES
from tests.contracts.test_payload_schemas import get_json, validator

FLAPPY = """
[[rule]]
id = "wallbox-connection"
source = "podero.wallbox"
field = "connection"
to = "offline"
channels = ["partner"]
flap = { changes = 1, within = "10m", settle = "5m" }

[[rule]]
id = "channel-flaps"
source = "bridge.channel"
field = "status"
changed = true
channels = ["ops"]
flap = { changes = 3, within = "1h", settle = "30m" }
"""


def test_the_flapping_type_is_listed_only_for_rules_with_flap_on_their_sources(make_config):
    assert FLAPPING_TYPE not in event_types(load_for(make_config()).rules)
    types = event_types(load_for(make_config(rules=DEFAULT_RULES + FLAPPY)).rules)
    assert types[FLAPPING_TYPE] == ("bridge.channel", "podero.wallbox")


async def test_a_delivered_flapping_notice_meets_the_served_schema_and_the_summary_is_required(
    make_config, make_bridge, podero, sink
):
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user, is_ocpp_connected=True)
    bridge = await make_bridge(make_config(rules=FLAPPY, wallboxes=[{"user_id": user, "wallbox_id": wb}]))
    await bridge.poll()
    for connected in (False, True):  # two changes: more than one within 10 minutes
        podero.update_wallbox(wb, is_ocpp_connected=connected)
        bridge.clock.advance(timedelta(minutes=1))
        await bridge.poll()
    await bridge.deliver()
    received = await sink.wait_for(2)
    notice = next(r.json for r in received if r.json["type"] == FLAPPING_TYPE)

    listed = await get_json(bridge, "/api/schemas")
    [item] = [i for i in listed["items"] if i["type"] == FLAPPING_TYPE]
    assert item["sources"] == ["bridge.channel", "podero.wallbox"]
    served = await get_json(bridge, f"/api/schemas/{FLAPPING_TYPE}")
    assert served == schema_document(FLAPPING_TYPE, ("bridge.channel", "podero.wallbox"))
    check = validator(served)
    check.validate(notice)
    doc = await get_json(bridge, "/api/openapi.json")
    ref = doc["webhooks"][FLAPPING_TYPE]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator({**ref, "components": doc["components"]}).validate(notice)
    for broken in ("no_flap", "bad_count"):
        body = copy.deepcopy(notice)
        if broken == "no_flap":
            del body["data"]["flap"]
        else:
            body["data"]["flap"]["changes"] = 0
        with pytest.raises(ValidationError):
            check.validate(body)
