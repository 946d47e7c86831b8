"""`wattbridge demo` end to end: simulator, bridge, webhook sink and mailbox on loopback, narrated.

The demo runs on the real clock by design (it is for people to watch); the poll interval is shortened
here so the scenario takes about five seconds instead of ten.
"""

from __future__ import annotations

from bridge.cli import demo


async def test_the_demo_shows_each_signed_webhook_and_the_email_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(demo, "POLL_SECONDS", 0.5)  # margin for a loaded machine

    rc = await demo.run_demo()

    out = capsys.readouterr().out
    assert rc == 0, out
    assert "Demo finished: every notification arrived." in out
    assert "⇒ webhook  wallbox.charging_started (rule charging-started, seq 1)" in out
    assert "⇒ webhook  wallbox.action_needed (rule wallbox-action-needed, seq 2)" in out
    assert (
        "⇒ email    to ops@example.com: [wattbridge] Wallbox Charge Lite of ada@example.com needs action"
        in out
    )
    # The rest of the fleet and a Realto command, each through its own source and the repo's rules/.
    assert "⇒ webhook  heat_pump.action_needed (rule heat-pump-action-needed, seq 1)" in out
    assert "⇒ email    to ops@example.com: [wattbridge] Heat pump Altherma 3 needs action" in out
    assert "⇒ webhook  command.succeeded (rule realto-command-succeeded, seq 1)" in out
    assert '              status: "Pending" → "Succeeded"' in out
    assert "⇒ webhook  electric_vehicle.charging_started (rule ev-charging-started, seq 1)" in out
    assert "SIGNATURE INVALID" not in out
    assert out.count("signature verified") >= 6
    step_1 = out.split("▶ 1.")[1].split("▶ 2.")[0]
    assert "(no notification: no rule matches this change)" in step_1  # plugging in fires nothing
    step_6 = out.split("▶ 6.")[1].split("▶ 7.")[0]
    assert "(no notification: no rule matches this change)" in step_6  # a pending command is no news


def test_the_demo_uses_the_checkouts_rule_files():
    assert (demo.REPO_RULES / "fleet.toml").is_file()
