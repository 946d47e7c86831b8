"""Inhibition (#14): while a rule with `inhibits` fires, the rules it names are muted (kept as
`suppressed`, replayable, the trace saying by whom) on the same resource, or on every resource of
the same provider; once it stops, they notify again. Live bridge, injected clock; bad keys are
refused at FILE:LINE."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.errors import RuleError
from bridge.explain.report import explain
from bridge.notify.rulebook import load_for

WB = "00000000-0000-4000-8000-0000000000d1"

RULES = """
[[rule]]
id = "provider-down"
source = "bridge.provider"
field = "status"
to = "down"
resolve = true
inhibits = ["wallbox-*"]
inhibit_scope = "provider"
channels = ["partner"]

[[rule]]
id = "wallbox-unauthenticated"
source = "podero.wallbox"
field = "is_authenticated"
to = false
resolve = true
inhibits = ["action-needed"]
channels = ["partner"]

[[rule]]
id = "action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
channels = ["partner"]

[[rule]]
id = "wallbox-offline"
source = "podero.wallbox"
field = "is_ocpp_connected"
to = false
channels = ["partner"]
"""


@pytest.fixture
async def bridge(make_config, make_bridge, podero):
    user = podero.add_user(email="ada@example.com")
    box = {"user_id": user, "wallbox_id": podero.add_wallbox(user, wallbox_id=WB)}
    b = await make_bridge(make_config(rules=RULES, wallboxes=[box]))
    await b.poll()  # baseline
    return b


async def step(bridge) -> None:
    bridge.clock.advance(timedelta(minutes=1))
    await bridge.poll()
    await bridge.deliver()


def fired(sink) -> list[str]:
    return [h.json["data"]["rule"] for h in sink.received]


async def test_a_rule_mutes_another_on_the_same_resource_even_in_the_same_poll(bridge, podero, sink):
    podero.add_action(WB, code="reauthenticate")  # unauthenticated AND action needed, one poll
    await step(bridge)
    await sink.wait_for(1)

    assert fired(sink) == ["wallbox-unauthenticated"]
    [muted] = await bridge.store.list_deliveries(status="suppressed")
    [ev] = await explain(bridge.store, "action-needed", WB)
    assert ev.trace.outcome == "inhibited"
    assert any("inhibited by wallbox-unauthenticated" in r for r in ev.trace.reasons)
    assert [d.delivery.id for d in ev.deliveries] == [muted.id]


async def test_a_provider_outage_mutes_its_devices_until_it_resolves(bridge, podero, sink):
    podero.fail("wallbox", status=503, times=3)
    for _ in range(3):
        await step(bridge)
    await sink.wait_for(1)
    assert fired(sink) == ["provider-down"]

    # The provider answers again, with the wallbox offline: its devices' results commit before the
    # provider's recovery, so the offline notice is muted as part of the outage.
    podero.update_wallbox(WB, is_ocpp_connected=False)
    await step(bridge)
    await sink.wait_for(2)
    assert fired(sink) == ["provider-down", "provider-down"]  # and its resolution
    assert sink.received[1].json["data"]["status"] == "resolved"
    [ev] = await explain(bridge.store, "wallbox-offline", WB)
    assert ev.trace.outcome == "inhibited"

    # The outage is over: the next offline notice goes out.
    podero.update_wallbox(WB, is_ocpp_connected=True)
    await step(bridge)
    podero.update_wallbox(WB, is_ocpp_connected=False)
    await step(bridge)
    await sink.wait_for(3)
    assert fired(sink)[-1] == "wallbox-offline"


@pytest.mark.parametrize(
    ("change", "line", "message"),
    [
        pytest.param(
            ('inhibits = ["action-needed"]', 'inhibits = ["action-neded"]'),
            18,
            "did you mean 'action-needed'",
            id="unknown",
        ),
        pytest.param(
            ('resolve = true\ninhibits = ["action', 'inhibits = ["action'),
            12,
            "must know when it stops",
            id="no-resolve",
        ),
        pytest.param(
            ('inhibit_scope = "provider"', 'inhibit_scope = "site"'),
            9,
            "'resource' or 'provider'",
            id="scope",
        ),
    ],
)
def test_a_bad_inhibition_is_refused_at_its_line(make_config, change, line, message):
    config = make_config(rules=RULES.replace(*change))
    with pytest.raises(RuleError) as caught:
        load_for(config)
    [problem] = caught.value.problems
    assert problem.line == line
    assert message in problem.message
