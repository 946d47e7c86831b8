"""Each trigger operator, on rules loaded from TOML exactly as users write them: from / to / not_from /
not_to (a value or a list), changed, above / below, event kinds, `if`, nested and action paths."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.model import EventKind
from bridge.poll.diff import diff
from bridge.rules.engine import RuleSet
from bridge.rules.loader import load_rules

SOURCE = "podero.wallbox"


@pytest.fixture
def load(tmp_path):
    def make(body: str) -> RuleSet:
        (tmp_path / "r.toml").write_text(
            f'[[rule]]\nid = "r"\nsource = "{SOURCE}"\nchannels = ["ops"]\n{body}\n'
        )
        return load_rules(["r.toml"], base_dir=tmp_path, channels={"ops"})

    return make


def fires(rules: RuleSet, old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    kind: EventKind = "appeared" if old is None else "disappeared" if new is None else "changed"
    changes = diff(old, new, source=SOURCE, keep=rules.keep_fields(SOURCE))
    return bool(rules.evaluate(source=SOURCE, kind=kind, old=old, new=new, changes=changes))


@pytest.mark.parametrize(
    ("body", "old", "new", "expected"),
    [
        ('field = "mode"\nto = "CHARGING"', "READY", "CHARGING", True),
        ('field = "mode"\nto = "CHARGING"', "CHARGING", "READY", False),
        ('field = "mode"\nto = ["CHARGING", "PLUGGED_IN"]', "READY", "PLUGGED_IN", True),
        ('field = "mode"\nfrom = "READY"\nto = "CHARGING"', "PLUGGED_IN", "CHARGING", False),
        ('field = "mode"\nfrom = ["READY", "PLUGGED_IN"]', "PLUGGED_IN", "UNKNOWN", True),
        ('field = "mode"\nnot_to = "UNKNOWN"', "READY", "UNKNOWN", False),
        ('field = "mode"\nnot_to = ["UNKNOWN", "UNAVAILABLE"]', "READY", "CHARGING", True),
        ('field = "mode"\nnot_from = "UNKNOWN"', "UNKNOWN", "READY", False),
        ('field = "mode"\nnot_from = "UNKNOWN"', "READY", "CHARGING", True),
        ('field = "mode"\nchanged = true', "READY", "CHARGING", True),
    ],
)
def test_value_operators_match_the_old_and_new_values(load, body, old, new, expected):
    assert fires(load(body), {"mode": old}, {"mode": new}) is expected


def test_a_field_that_did_not_change_never_triggers_a_changed_rule(load):
    rules = load('field = "mode"\nto = "READY"')
    assert (
        fires(rules, {"mode": "READY", "is_charging": False}, {"mode": "READY", "is_charging": True}) is False
    )


def test_true_is_not_one_and_false_is_not_zero(load):
    assert fires(load('field = "phases"\nto = 1'), {"phases": 3}, {"phases": True}) is False
    assert fires(load('field = "phases"\nto = 1'), {"phases": 3}, {"phases": 1}) is True
    assert (
        fires(load('field = "is_charging"\nto = false'), {"is_charging": True}, {"is_charging": 0}) is False
    )


@pytest.mark.parametrize(
    ("body", "old", "new", "expected"),
    [
        ('field = "charge_rate_w"\nbelow = 1000', 1500, 900, True),
        ('field = "charge_rate_w"\nbelow = 1000', 1000, 999.5, True),
        ('field = "charge_rate_w"\nbelow = 1000', 900, 800, False),  # already below: no crossing
        ('field = "charge_rate_w"\nbelow = 1000', 900, 1500, False),
        ('field = "charge_rate_w"\nabove = 7000', 6999, 7001, True),
        ('field = "charge_rate_w"\nabove = 7000', 7000, 7000.5, True),
        ('field = "charge_rate_w"\nabove = 7000', 7001, 8000, False),
        ('field = "charge_rate_w"\nabove = 7000', None, 8000, False),  # from nothing is no crossing
        ('field = "charge_rate_w"\nabove = 7000', "6000", "8000", True),  # Decimal-as-string values
    ],
)
def test_numeric_crossings_fire_only_when_the_threshold_is_crossed(load, body, old, new, expected):
    assert fires(load(body), {"charge_rate_w": old}, {"charge_rate_w": new}) is expected


def test_nested_paths_trigger_on_a_change_at_or_under_them(load):
    rules = load('field = "device_model"\nchanged = true')
    old = {"device_model": {"model": "Charge Lite", "manufacturer": "Easee"}}
    assert fires(rules, old, {"device_model": {"model": "Charge Max", "manufacturer": "Easee"}}) is True
    exact = load('field = "device_model.model"\nto = "Charge Max"')
    assert fires(exact, old, {"device_model": {"model": "Charge Max", "manufacturer": "Easee"}}) is True
    assert fires(exact, old, {"device_model": {"model": "Charge Lite", "manufacturer": "Wallbe"}}) is False


def test_an_action_path_fires_when_that_action_appears(load):
    rules = load('field = "actions[reauthenticate]"\nchanged = true\nif = "new.actions | length > 0"')
    action = {"code": "reauthenticate", "resolution_link": {"url": "/cues/c1/resolve?secret=a"}}
    assert fires(rules, {"actions": []}, {"actions": [action]}) is True
    resigned = {"code": "reauthenticate", "resolution_link": {"url": "/cues/c1/resolve?secret=b"}}
    assert fires(rules, {"actions": [action]}, {"actions": [resigned]}) is False  # only the secret moved


def test_if_expressions_see_old_new_and_changes_and_a_failing_one_is_false(load):
    rules = load('field = "is_charging"\nto = true\nif = "new.charge_rate_w > old.charge_rate_w"')
    assert fires(
        rules, {"is_charging": False, "charge_rate_w": 0}, {"is_charging": True, "charge_rate_w": 7000}
    )
    assert not fires(
        rules, {"is_charging": False, "charge_rate_w": 9}, {"is_charging": True, "charge_rate_w": 9}
    )
    assert not fires(rules, {"is_charging": False}, {"is_charging": True})  # missing field: false, logged
    by_changes = load("changed = true\nif = \"changes | selectattr('field', 'eq', 'mode') | list\"")
    assert fires(by_changes, {"mode": "READY", "x": 1}, {"mode": "CHARGING", "x": 1}) is True
    assert fires(by_changes, {"mode": "READY", "x": 1}, {"mode": "READY", "x": 2}) is False


def test_appeared_and_disappeared_rules_fire_only_on_their_event(load):
    appeared = load('event = "appeared"')
    gone = load('event = "disappeared"\nif = "old.is_charging"')
    assert fires(appeared, None, {"id": "wb-1"}) is True
    assert fires(appeared, {"id": "wb-1"}, None) is False
    assert fires(gone, {"id": "wb-1", "is_charging": True}, None) is True
    assert fires(gone, {"id": "wb-1", "is_charging": False}, None) is False
    assert fires(gone, {"id": "wb-1", "mode": "A"}, {"id": "wb-1", "mode": "B"}) is False


def test_among_many_rules_exactly_those_watching_a_changed_field_fire_in_rule_order(load, tmp_path):
    body = "".join(
        f'[[rule]]\nid = "r{i}"\nsource = "{SOURCE}"\nfield = "{field}"\nchanged = true\n'
        'channels = ["ops"]\n\n'
        for i, field in enumerate(["mode", "is_charging", "charge_rate_w"] * 50)
    )
    (tmp_path / "many.toml").write_text(body)
    rules = load_rules(["many.toml"], base_dir=tmp_path, channels={"ops"})
    old, new = {"mode": "READY", "is_charging": False}, {"mode": "CHARGING", "is_charging": False}
    firings = rules.evaluate(
        source=SOURCE, kind="changed", old=old, new=new, changes=diff(old, new, source=SOURCE)
    )
    assert [f.rule.id for f in firings] == [f"r{i}" for i in range(0, 150, 3)]  # in rule order
