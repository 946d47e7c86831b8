"""Escalating reminders end to end (Podero simulator → bridge → webhook sink) on the injected clock:
`repeat = ["15m", "30m", "1h"]` reminds after 15m, 30m, then every hour, across a restart; and
`repeat = "never"` sends one notification per firing however long it holds."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

WB = "00000000-0000-4000-8000-0000000000c1"

RULE = """
[[rule]]
id = "action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
repeat = {repeat}
resolve = true
channels = ["partner"]
"""


@pytest.fixture
def wallbox(podero):
    user = podero.add_user(email="grace@example.com")
    return {"user_id": user, "wallbox_id": podero.add_wallbox(user, wallbox_id=WB)}


async def test_escalating_repeats_wait_15m_30m_then_every_hour_and_survive_a_restart(
    make_config, make_bridge, podero, sink, wallbox
):
    config = make_config(rules=RULE.format(repeat='["15m", "30m", "1h"]'), wallboxes=[wallbox])
    bridge = await make_bridge(config)
    await bridge.poll()  # baseline
    podero.add_action(WB, code="reauthenticate")
    start = bridge.clock.now()
    await bridge.poll()
    await bridge.deliver()
    await sink.wait_for(1)

    for _ in range(50):  # 50 min: the 15m and 45m reminders
        bridge.clock.advance(timedelta(minutes=1))
        await bridge.tick()
        await bridge.deliver()  # sent at the minute it fired (a send in flight sees no clock jump)
    await bridge.client.close()  # a restart between reminders keeps the schedule
    restarted = await make_bridge(config)
    for _ in range(130):  # to 180 min: 105m and 165m (hourly from then on)
        restarted.clock.advance(timedelta(minutes=1))
        await restarted.tick()
        await restarted.deliver()
    await sink.wait_for(5)

    at = [datetime.fromisoformat(h.json["timestamp"]) for h in sink.received]
    sent = [(t - start) // timedelta(minutes=1) for t in at]
    assert sent == [0, 15, 45, 105, 165]
    assert [h.json["data"]["status"] for h in sink.received] == ["firing"] * 5


async def test_repeat_never_sends_one_notification_per_firing_and_fires_again_after_it_stops(
    make_config, make_bridge, podero, sink, wallbox
):
    config = make_config(rules=RULE.format(repeat='"never"'), wallboxes=[wallbox])
    bridge = await make_bridge(config)
    await bridge.poll()
    podero.add_action(WB, code="reauthenticate")
    await bridge.poll()
    podero.add_action(WB, code="update_firmware")  # still needs action: the same firing
    bridge.clock.advance(timedelta(minutes=5))
    await bridge.poll()
    for _ in range(48):
        bridge.clock.advance(timedelta(hours=1))
        await bridge.tick()
    podero.resolve_action(WB, "reauthenticate")
    podero.resolve_action(WB, "update_firmware")
    await bridge.poll()
    podero.add_action(WB, code="reauthenticate")
    bridge.clock.advance(timedelta(minutes=1))
    await bridge.poll()
    await bridge.deliver()
    await sink.wait_for(3)

    assert [h.json["data"]["status"] for h in sink.received] == ["firing", "resolved", "firing"]


def test_a_dry_run_shows_escalating_reminders_at_their_times(repo_root, tmp_path, monkeypatch, capsys):
    from bridge.cli.main import main

    rules = tmp_path / "escalate.toml"
    rules.write_text(
        '[[rule]]\nid = "offline"\nsource = "podero.wallbox"\nfield = "is_ocpp_connected"\nto = false\n'
        'repeat = ["1h", "2h", "4h"]\nresolve = true\nchannels = ["partner"]\n'
    )
    monkeypatch.chdir(repo_root)
    argv = ["rules", "test", "-c", "config.example.toml", "--rules", str(rules), "--brief"]
    assert main([*argv, "--timeline", "rules/examples/wallbox-offline.jsonl"]) == 0

    lines = [line.split("  ", 1) for line in capsys.readouterr().out.splitlines() if line[:4] == "2026"]
    told = [(at[11:16], text.split(" offline")[0]) for at, text in lines if " offline [" in text]
    assert told == [
        ("21:10", "FIRING"),
        ("21:20", "RESOLVED"),
        ("21:30", "FIRING"),
        ("22:30", "FIRING (reminder)"),  # +1h
        ("00:30", "FIRING (reminder)"),  # +2h
        ("04:30", "FIRING (reminder)"),  # +4h, then every 4h
        ("08:30", "FIRING (reminder)"),
        ("11:00", "RESOLVED"),
    ]
