"""Fallback channels and 410s across restarts (#14 item 5), end to end on the injected clock:
a dead letter goes on to the channel's `fallback` (here the `ops` mailbox) and the `bridge.channel`
state says so (`fallback_to`, a change rules can alert on); a 410-disabled channel stays disabled
after a restart of the app on the same store, SQLite and PostgreSQL, until the API or
`wattbridge channels enable` re-enables it."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import timedelta

import pytest

from bridge.cli.main import main
from bridge.config.loader import load_config
from bridge.errors import ConfigError
from bridge.model import CHANNEL_SOURCE, ResourceKey
from tests.conftest import DEFAULT_RULES, WEBHOOK_SECRET
from tests.web.conftest import ADMIN_TOKEN

WB = "00000000-0000-4000-8000-0000000000f1"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

RULES = (
    DEFAULT_RULES
    + """
[[rule]]
id = "partner-falls-back"
source = "bridge.channel"
field = "fallback_to"
to = "ops"
channels = ["ops"]
"""
)


@pytest.fixture
def wallbox(podero):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    return {"user_id": user, "wallbox_id": WB}


def configured(make_config, wallbox, store_cfg, sink, **extra):
    channels = {
        "partner": {"kind": "webhook", "url": sink.url, "secret": WEBHOOK_SECRET, "fallback": "ops"},
        "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
    }
    return make_config(
        rules=RULES,
        wallboxes=[wallbox],
        channels=channels,
        server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN},
        **store_cfg,
        **extra,
    )


async def settle(bridge) -> None:
    """Deliver until the outbox is empty. The app's own worker loop runs too and may hold a claim
    that `deliver()` does not see yet (on PostgreSQL a claim takes a round trip), so ask again."""
    for _ in range(200):
        await bridge.deliver()
        if await bridge.store.outbox_depth() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the outbox did not drain")


async def charge(bridge, podero, *, on: bool) -> None:
    podero.update_wallbox(WB, is_charging=on, charge_rate_w=7200 if on else 0)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await settle(bridge)


async def channel_state(store, name="partner"):
    snap = await store.get_snapshot(ResourceKey(source=CHANNEL_SOURCE, provider="bridge", resource_id=name))
    return snap.state


async def test_a_dead_letter_goes_to_the_fallback_and_the_channel_state_says_so(
    store_cfg, make_config, make_bridge, podero, sink, mailbox, wallbox
):
    bridge = await make_bridge(configured(make_config, wallbox, store_cfg, sink))
    await bridge.poll()  # baseline
    sink.respond_with(400)  # the receiver refuses this notification for good: a dead letter
    await charge(bridge, podero, on=True)  # and the fallback copy, and `partner-falls-back`

    [dead] = await bridge.store.list_deliveries(channel="partner", status="dead")
    copies = await bridge.store.list_deliveries(channel="ops")
    copy = next(d for d in copies if d.event_id == dead.event_id)
    assert copy.status == "delivered"
    messages = await mailbox.wait_for(2)
    texts = [m.get_content() for m in messages]
    assert any("Sent to 'ops': channel 'partner' could not deliver it (HTTP 400" in t for t in texts)
    assert (await channel_state(bridge.store))["fallback_to"] == "ops"
    fell_back = [e for e in await bridge.store.list_events() if e.rule_id == "partner-falls-back"]
    assert len(fell_back) == 1  # one bridge.channel event for the spell, not one per dead letter

    sink.clear_script()  # the receiver works again: the next success ends the spell
    await charge(bridge, podero, on=False)
    await charge(bridge, podero, on=True)
    assert (await channel_state(bridge.store))["fallback_to"] is None


async def test_a_410_disabled_channel_stays_disabled_across_a_restart_until_the_api_enables_it(
    store_cfg, make_config, make_bridge, podero, sink, mailbox, wallbox
):
    config = configured(make_config, wallbox, store_cfg, sink)
    bridge = await make_bridge(config)
    await bridge.poll()
    sink.respond_with(410)
    await charge(bridge, podero, on=True)
    assert (await channel_state(bridge.store))["status"] == "disabled"
    sink.clear_script()
    await bridge.client.close()  # the process stops with the channel disabled

    restarted = await make_bridge(config)  # same store, same config
    assert (await channel_state(restarted.store))["status"] == "disabled"
    await charge(restarted, podero, on=False)
    await charge(restarted, podero, on=True)
    assert [h.status for h in sink.received] == [410]  # nothing sent to the gone receiver
    dead = await restarted.store.list_deliveries(channel="partner", status="dead")
    assert len(dead) == 2  # the 410 and the one after the restart, both on to the fallback
    fallback_events = {d.event_id for d in await restarted.store.list_deliveries(channel="ops")}
    assert {d.event_id for d in dead} <= fallback_events

    resp = await restarted.client.post("/api/channels/partner/enable", headers=AUTH)
    assert (await resp.json())["was_disabled"] is True
    await charge(restarted, podero, on=False)
    await charge(restarted, podero, on=True)
    assert [h.status for h in sink.received] == [410, 204]


async def test_the_cli_enables_a_disabled_channel_of_a_stopped_service(
    make_config, make_bridge, podero, sink, mailbox, wallbox, tmp_path, capsys
):
    config = configured(make_config, wallbox, {}, sink)
    bridge = await make_bridge(config)
    await bridge.poll()
    sink.respond_with(410)
    await charge(bridge, podero, on=True)
    sink.clear_script()
    await bridge.client.close()
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(f"""
        [store]
        url = "{config.store.url}"
        [channels.partner]
        kind = "webhook"
        url = "{sink.url}"
        secret = "{WEBHOOK_SECRET}"
        [outbound]
        allow = ["127.0.0.0/8"]
        """)
    )

    assert await asyncio.to_thread(main, ["channels", "enable", "-c", str(path), "partner"]) == 0
    assert "partner: enabled" in capsys.readouterr().out
    restarted = await make_bridge(config)
    assert (await channel_state(restarted.store))["status"] == "ok"
    await charge(restarted, podero, on=False)
    await charge(restarted, podero, on=True)
    assert [h.status for h in sink.received] == [410, 204]
    assert await asyncio.to_thread(main, ["channels", "enable", "-c", str(path), "partner"]) == 0
    assert "not disabled; nothing changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("fallback", "words"),
    [('"opz"', "unknown channel 'opz' (known: ops); did you mean 'ops'?"), ('"partner"', "its own fallback")],
)
def test_check_names_a_bad_fallback_with_its_line(tmp_path, fallback, words):
    path = tmp_path / "config.toml"
    path.write_text(
        textwrap.dedent(f"""
        [channels.partner]
        kind = "webhook"
        url = "https://example.com/hook"
        secret = "{WEBHOOK_SECRET}"
        fallback = {fallback}

        [channels.ops]
        kind = "email"
        to = ["ops@example.com"]
        from = "wattbridge@example.com"
        """).lstrip()
    )
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{path}:5: channels.partner.fallback: ")
    assert words in problem


def test_a_dry_run_shows_where_a_dead_letter_would_go(repo_root, tmp_path, monkeypatch, capsys):
    example = (repo_root / "config.example.toml").read_text()
    assert '# fallback = "ops"' in example
    config = tmp_path / "config.toml"
    config.write_text(example.replace('# fallback = "ops"', 'fallback = "ops"', 1))
    for name in ("templates", "rules"):
        (tmp_path / name).symlink_to(repo_root / name)
    monkeypatch.chdir(tmp_path)
    argv = ["rules", "test", "-c", str(config), "--rules", "rules/wallbox.toml", "--brief"]
    argv += ["--old", "rules/examples/wallbox-old.json", "--new", "rules/examples/wallbox-new.json"]

    assert main(argv) == 0
    assert "    → partner (webhook; a dead letter goes on to ops)" in capsys.readouterr().out.splitlines()
