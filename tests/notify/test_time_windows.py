"""Time windows on the live bridge (#14): a notification muted by a rule's or a channel's window is
deferred (kept, held), and when the window ends one digest goes out per email channel, leaving out
what resolved meanwhile; a webhook (which takes no digests) gets each notification on its own. On
the injected clock: it starts on Sunday 2026-11-22 at 21:00 UTC, 22:00 in Berlin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.config.windows import TimeWindow
from bridge.errors import ConfigError, RuleError
from bridge.explain.report import explain
from bridge.notify.rulebook import load_for

A = "00000000-0000-4000-8000-0000000000a1"
B = "00000000-0000-4000-8000-0000000000a2"
MORNING = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 07:00 in Berlin

NIGHT_RULE = """
[[rule]]
id = "action-needed-at-night"
source = "podero.wallbox"
field = "action_needed"
to = true
resolve = true
type = "wallbox.action_needed"
channels = ["partner", "ops"]
mute = [{ from = "22:00", to = "07:00", timezone = "Europe/Berlin" }]
"""


@pytest.fixture
def boxes(podero):
    user = podero.add_user(email="ada@example.com")
    return [{"user_id": user, "wallbox_id": podero.add_wallbox(user, wallbox_id=w)} for w in (A, B)]


async def at(bridge, when: datetime) -> None:
    bridge.clock.set(when)
    await bridge.poll()
    await bridge.tick()
    await bridge.digest()
    await bridge.deliver()


async def test_a_night_is_one_morning_digest_without_what_resolved_meanwhile(
    make_config, make_bridge, podero, boxes, sink, mailbox
):
    bridge = await make_bridge(make_config(rules=NIGHT_RULE, wallboxes=boxes))
    await bridge.poll()  # baseline
    start = bridge.clock.now()
    podero.add_action(A, code="reauthenticate")
    podero.add_action(B, code="reauthenticate")
    await at(bridge, start + timedelta(minutes=5))  # both fire: deferred
    podero.resolve_action(B, "reauthenticate")
    await at(bridge, start + timedelta(hours=2))  # B resolves: deferred too
    await at(bridge, MORNING - timedelta(seconds=1))
    assert sink.received == []
    assert mailbox.messages == []

    await at(bridge, MORNING)

    [digest] = await mailbox.wait_for(1)
    assert A in digest.get_content()
    assert B not in digest.get_content()
    [webhook] = await sink.wait_for(1)
    assert (webhook.json["data"]["resource_id"], webhook.json["data"]["status"]) == (A, "firing")
    left_out = await bridge.store.list_deliveries(status="suppressed")
    assert len(left_out) == 4  # B's firing and resolution, on both channels
    assert {d.last_error for d in left_out} == {
        "resolved before the time window ended: left out of its digest"
    }


async def test_a_channel_window_defers_only_that_channel_and_explain_says_until_when(
    make_config, make_bridge, podero, boxes, sink, mailbox
):
    rules = NIGHT_RULE.replace('mute = [{ from = "22:00", to = "07:00", timezone = "Europe/Berlin" }]', "")
    config = make_config(rules=rules, wallboxes=boxes)
    ops = config.channels["ops"].model_copy(
        update={"active": [TimeWindow.model_validate({"days": ["mon-fri"], "from": "08:00", "to": "18:00"})]}
    )
    config = config.model_copy(update={"channels": {**config.channels, "ops": ops}})
    bridge = await make_bridge(config)
    await bridge.poll()
    podero.add_action(A, code="reauthenticate")
    await at(bridge, bridge.clock.now() + timedelta(minutes=1))

    await sink.wait_for(1)  # the partner hears at once
    assert mailbox.messages == []
    [ev] = await explain(bridge.store, "action-needed-at-night", A)
    assert ev.trace.outcome == "sent"
    assert "ops: muted by a time window: deferred until 2026-11-23T08:00:00Z" in ev.trace.reasons
    assert sorted(d.delivery.status for d in ev.deliveries) == ["delivered", "held"]

    await at(bridge, datetime(2026, 11, 23, 8, 0, tzinfo=UTC))  # Monday 08:00: ops' window opens
    [mail] = await mailbox.wait_for(1)
    assert A in mail.get_content()


def test_a_bad_window_in_a_rule_is_refused_at_its_file_and_line(make_config):
    bad = NIGHT_RULE.replace("Europe/Berlin", "Europe/Berln")
    config = make_config(rules=bad)
    with pytest.raises(RuleError) as caught:
        load_for(config)
    [problem] = caught.value.problems
    assert problem.line == 10
    assert problem.key == "rule[0].mute[0].timezone"
    assert "did you mean 'Europe/Berlin'?" in problem.message


def test_a_bad_window_on_a_channel_is_a_config_error_at_its_line(tmp_path):
    from bridge.config.loader import load_config

    path = tmp_path / "config.toml"
    path.write_text(
        '[channels.ops]\nkind = "email"\nto = ["ops@example.com"]\nfrom = "w@example.com"\n'
        'mute = [{ from = "22:00", to = "7:00" }]\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    [problem] = caught.value.problems
    assert (problem.line, problem.key) == (5, "channels.ops.mute[0].to")
    assert "HH:MM" in problem.message
