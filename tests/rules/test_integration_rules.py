"""rules/integrations/channels.toml loads with config.example.toml's channels, fires on states the
Podero simulator really sends, and renders what each channel kind stores (topic, title, alert)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.channels.registry import build_channels
from bridge.clock import ManualClock
from bridge.config.loader import load_config
from bridge.config.models import Config, RulesConfig
from bridge.errors import RuleError
from bridge.model import Observation, ResourceKey
from bridge.notify.render import Notifier
from bridge.notify.rulebook import load_for
from bridge.poll.diff import diff
from bridge.rules.engine import Firing, RuleSet
from bridge.rules.loader import load_rules
from bridge.simulator.podero import PoderoSimulator

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def config() -> Config:
    config = load_config(ROOT / "config.example.toml", environ={})
    return config.model_copy(update={"rules": RulesConfig(paths=["rules/integrations/*.toml"])})


@pytest.fixture(scope="module")
def rules(config) -> RuleSet:
    return load_for(config)


def fire(rs: RuleSet, old: dict[str, Any], new: dict[str, Any]) -> list[Firing]:
    changes = diff(old, new, source="podero.wallbox", keep=rs.keep_fields("podero.wallbox"))
    return rs.evaluate(source="podero.wallbox", kind="changed", old=old, new=new, changes=changes)


async def stored(config: Config, rules: RuleSet, firing: Firing, old: Any, new: Any, clock) -> dict[str, Any]:
    """What the outbox would store per channel for this firing (rendered by the real channels)."""
    async with aiohttp.ClientSession() as session:
        channels = build_channels(config, session=session, clock=clock)
        try:
            notifier = Notifier(channels, digest_groups={})
            key = ResourceKey(source="podero.wallbox", provider="podero", resource_id=new["id"])
            obs = Observation(key=key, state=new, observed_at=clock.now())
            event = notifier.event(obs, firing, sequence=1)
            deliveries = notifier.deliveries(event, firing, old, rules)
        finally:
            for channel in channels.values():
                await channel.close()
    return {d.channel: orjson.loads(d.body) for d in deliveries}


async def test_the_charging_state_is_published_retained_on_the_rules_topic(config, rules):
    clock = ManualClock()
    sim = PoderoSimulator(clock=clock)
    wb = sim.add_wallbox(sim.add_user(email="ada@example.com"), is_plugged_in=True)
    idle = sim.wallbox(wb)
    sim.update_wallbox(wb, is_charging=True)
    charging = sim.wallbox(wb)

    [firing] = fire(rules, idle, charging)
    assert firing.rule.id == "wallbox-charging-state"
    body = await stored(config, rules, firing, idle, charging, clock)

    assert body["homeassistant"]["topic"] == f"wattbridge/wallbox/{wb}/charging"
    assert body["homeassistant"]["retain"] is True
    assert orjson.loads(body["homeassistant"]["payload"])["data"]["state"]["is_charging"] is True
    sim.update_wallbox(wb, is_charging=False)
    assert [f.rule.id for f in fire(rules, charging, sim.wallbox(wb))] == ["wallbox-charging-state"]


async def test_an_offline_wallbox_is_an_alert_and_a_chat_message(config, rules):
    clock = ManualClock()
    sim = PoderoSimulator(clock=clock)
    wb = sim.add_wallbox(sim.add_user(email="ada@example.com"), is_plugged_in=True)
    online = sim.wallbox(wb)
    sim.update_wallbox(wb, is_ocpp_connected=False)
    offline = sim.wallbox(wb)

    [firing] = fire(rules, online, offline)
    assert firing.rule.id == "wallbox-offline"
    assert firing.rule.for_ is not None  # held 10 minutes before it notifies (tested in rules/state)
    body = await stored(config, rules, firing, online, offline, clock)

    [alert] = body["alertmanager"]
    assert alert["labels"]["alertname"] == "wallbox-offline"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["team"] == "energy-ops"
    assert alert["annotations"]["summary"] == f"Wallbox {wb} of ada@example.com is offline"
    assert "not connected to OCPP" in alert["annotations"]["description"]
    assert body["chat"]["title"] == f"Wallbox {wb} of ada@example.com is offline"
    assert body["chat"]["type"] == "failure"  # critical
    assert "template error" not in str(body)


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        pytest.param("wattbridge/{{ event.rule", "does not compile", id="syntax-error"),
        pytest.param("wattbridge/{{ new.no_such_field }}", "no_such_field", id="unknown-field"),
    ],
)
def test_a_broken_rule_topic_is_refused_at_its_file_and_line(tmp_path, topic, message):
    path = tmp_path / "mqtt.toml"
    path.write_text(
        '[[rule]]\nid = "x"\nsource = "podero.wallbox"\nfield = "is_charging"\nchannels = ["ha"]\n\n'
        f'[rule.mqtt]\ntopic = "{topic}"\n'
    )
    with pytest.raises(RuleError) as info:
        load_rules(["*.toml"], base_dir=tmp_path, channels=("ha",))
    [problem] = [str(p) for p in info.value.problems]
    assert problem.startswith(f"{path}:8: rule[0].mqtt.topic: ")
    assert message in problem
