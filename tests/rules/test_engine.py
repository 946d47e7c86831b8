"""Rule matching: every trigger operator, `if` over old/new/changes, fields deeper than the rule's,
rule order, and the (source, field) index that evaluates only the rules a change can match."""

from __future__ import annotations

import copy
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

from bridge.model import EventKind
from bridge.poll.diff import diff
from bridge.rules import templates
from bridge.rules.engine import Rule, RuleSet
from bridge.rules.loader import load_rules

WB = "podero.wallbox"


def rules(tmp_path: Path, text: str) -> RuleSet:
    (tmp_path / "rules.toml").write_text(textwrap.dedent(text))
    return load_rules(["rules.toml"], base_dir=tmp_path, channels=["partner", "ops"])


def one_rule(tmp_path: Path, body: str, *, source: str = WB) -> RuleSet:
    return rules(tmp_path, f'[[rule]]\nid = "r"\nsource = "{source}"\nchannels = ["partner"]\n{body}\n')


def wallbox(**fields: Any) -> dict[str, Any]:
    state: dict[str, Any] = {
        "device_model": {"manufacturer": "Easee", "model": "Charge Lite"},
        "owner": {"id": "u-1", "email": "ada@example.com"},
        "is_plugged_in": True,
        "is_charging": False,
        "charge_rate_w": 0.0,
        "connection": "online",
        "lifecycle_state": "authenticated",
        "action_needed": False,
        "actions": [],
    }
    state.update(fields)
    return state


def fired(
    rs: RuleSet, old: dict[str, Any] | None, new: dict[str, Any] | None, *, kind: EventKind = "changed"
) -> list[str]:
    """Ids of the rules that fire for old → new, with the changes the diff stage would give."""
    changes = diff(old, new, source=WB, keep=rs.keep_fields(WB))
    return [f.rule.id for f in rs.evaluate(source=WB, kind=kind, old=old, new=new, changes=changes)]


def fires(rs: RuleSet, old: dict[str, Any], new: dict[str, Any]) -> bool:
    return fired(rs, old, new) == ["r"]


# -------------------------------------------------------------------------------- from / to / not_*


def test_from_and_to_fire_only_on_that_transition(tmp_path):
    rs = one_rule(tmp_path, 'field = "is_charging"\nfrom = false\nto = true')

    assert fires(rs, wallbox(), wallbox(is_charging=True))
    assert not fires(rs, wallbox(is_charging=True), wallbox(is_charging=False))
    assert not fires(rs, wallbox(is_charging=None), wallbox(is_charging=True))  # from says false, not null


def test_to_alone_fires_from_any_other_value(tmp_path):
    rs = one_rule(tmp_path, 'field = "lifecycle_state"\nto = "error"')

    assert fires(rs, wallbox(), wallbox(lifecycle_state="error"))
    assert fires(rs, wallbox(lifecycle_state="pending"), wallbox(lifecycle_state="error"))
    assert not fires(rs, wallbox(), wallbox(lifecycle_state="pending"))


def test_a_list_means_any_of_its_values(tmp_path):
    rs = one_rule(
        tmp_path, 'field = "connection"\nfrom = ["online", "offline"]\nto = ["never_connected", "offline"]'
    )

    assert fires(rs, wallbox(), wallbox(connection="offline"))
    assert fires(rs, wallbox(connection="offline"), wallbox(connection="never_connected"))
    assert not fires(rs, wallbox(connection="never_connected"), wallbox(connection="offline"))
    assert not fires(rs, wallbox(connection="offline"), wallbox(connection="online"))


def test_not_from_fires_unless_the_old_value_is_excluded(tmp_path):
    rs = one_rule(tmp_path, 'field = "connection"\nnot_from = "never_connected"')

    assert fires(rs, wallbox(connection="online"), wallbox(connection="offline"))
    assert not fires(rs, wallbox(connection="never_connected"), wallbox(connection="online"))


def test_not_from_a_list_excludes_every_listed_old_value(tmp_path):
    rs = one_rule(tmp_path, 'field = "connection"\nnot_from = ["never_connected", "offline"]')

    assert fires(rs, wallbox(connection="online"), wallbox(connection="offline"))
    assert not fires(rs, wallbox(connection="offline"), wallbox(connection="online"))
    assert not fires(rs, wallbox(connection="never_connected"), wallbox(connection="online"))


def test_not_to_fires_unless_the_new_value_is_excluded(tmp_path):
    rs = one_rule(tmp_path, 'field = "lifecycle_state"\nnot_to = "authenticated"')

    assert fires(rs, wallbox(), wallbox(lifecycle_state="error"))
    assert not fires(rs, wallbox(lifecycle_state="error"), wallbox(lifecycle_state="authenticated"))


def test_not_to_a_list_excludes_every_listed_new_value(tmp_path):
    rs = one_rule(tmp_path, 'field = "lifecycle_state"\nnot_to = ["authenticated", "pending"]')

    assert fires(rs, wallbox(), wallbox(lifecycle_state="error"))
    assert not fires(rs, wallbox(), wallbox(lifecycle_state="pending"))
    assert not fires(rs, wallbox(lifecycle_state="error"), wallbox(lifecycle_state="authenticated"))


def test_booleans_and_numbers_are_not_confused(tmp_path):
    rs = one_rule(tmp_path, 'field = "phases"\nto = 1')

    assert not fires(rs, wallbox(phases=3), wallbox(phases=True))
    assert fires(rs, wallbox(phases=3), wallbox(phases=1))
    assert fires(rs, wallbox(phases=3), wallbox(phases=1.0))  # 1 and 1.0 are the same JSON number


def test_changed_fires_on_any_change_of_the_field_and_nothing_else(tmp_path):
    rs = one_rule(tmp_path, 'field = "connection"\nchanged = true')

    assert fires(rs, wallbox(), wallbox(connection="offline"))
    assert fires(rs, wallbox(connection="offline"), wallbox(connection="online"))
    assert not fires(rs, wallbox(), wallbox(is_charging=True))
    assert not fires(rs, wallbox(), wallbox())


def test_a_field_rule_without_operators_fires_on_any_change_of_the_field(tmp_path):
    rs = one_rule(tmp_path, 'field = "firmware_version"')

    assert fires(rs, wallbox(firmware_version="4.12.1"), wallbox(firmware_version="4.13.0"))
    assert fires(rs, wallbox(), wallbox(firmware_version="4.13.0"))


# ------------------------------------------------------------------------------------ above / below


def test_above_fires_when_the_value_crosses_it_and_not_while_it_stays_above(tmp_path):
    rs = one_rule(tmp_path, 'field = "charge_rate_w"\nabove = 1000')

    assert fires(rs, wallbox(charge_rate_w=900.0), wallbox(charge_rate_w=1100.0))
    assert fires(rs, wallbox(charge_rate_w=1000.0), wallbox(charge_rate_w=1000.5))  # from exactly at it
    assert not fires(rs, wallbox(charge_rate_w=1100.0), wallbox(charge_rate_w=7200.0))
    assert not fires(rs, wallbox(charge_rate_w=900.0), wallbox(charge_rate_w=1000.0))  # at is not above
    assert not fires(rs, wallbox(charge_rate_w=1100.0), wallbox(charge_rate_w=900.0))


def test_below_fires_when_the_value_crosses_it_and_not_while_it_stays_below(tmp_path):
    rs = one_rule(tmp_path, 'field = "charge_rate_w"\nbelow = 1000')

    assert fires(rs, wallbox(charge_rate_w=7200.0), wallbox(charge_rate_w=800.0))
    assert fires(rs, wallbox(charge_rate_w=1000.0), wallbox(charge_rate_w=999.0))
    assert not fires(rs, wallbox(charge_rate_w=800.0), wallbox(charge_rate_w=500.0))
    assert not fires(rs, wallbox(charge_rate_w=800.0), wallbox(charge_rate_w=7200.0))


def test_a_crossing_needs_a_number_on_both_sides(tmp_path):
    rs = one_rule(tmp_path, 'field = "charge_rate_w"\nbelow = 1000')

    assert not fires(rs, wallbox(charge_rate_w=None), wallbox(charge_rate_w=500.0))
    assert not fires(rs, wallbox(charge_rate_w=7200.0), wallbox(charge_rate_w=None))
    assert not fires(rs, wallbox(charge_rate_w=True), wallbox(charge_rate_w=False))


def test_decimal_strings_cross_like_numbers(tmp_path):
    # Podero's Decimal fields arrive as JSON strings ("4.210").
    rs = one_rule(tmp_path, 'field = "consumption_last_day_kwh"\nabove = 10')

    assert fires(rs, wallbox(consumption_last_day_kwh="4.210"), wallbox(consumption_last_day_kwh="12.5"))
    assert not fires(rs, wallbox(consumption_last_day_kwh="n/a"), wallbox(consumption_last_day_kwh="12.5"))


def test_hysteresis_widens_the_band_the_value_must_leave_to_stop_holding(tmp_path):
    rs = one_rule(tmp_path, 'field = "charge_rate_w"\nbelow = 1000\nhysteresis = 200')
    rule = rs.by_id["r"]

    assert rule.active(wallbox(charge_rate_w=1100.0))  # inside the band: still holds
    assert not rule.active(wallbox(charge_rate_w=1250.0))
    assert not rule.active(None)


# ------------------------------------------------------------------------------------------ events


def test_appeared_and_disappeared_rules_fire_only_for_their_event(tmp_path):
    rs = rules(
        tmp_path,
        """
        [[rule]]
        id = "appeared"
        source = "podero.wallbox"
        event = "appeared"
        channels = ["partner"]

        [[rule]]
        id = "disappeared"
        source = "podero.wallbox"
        event = "disappeared"
        channels = ["partner"]

        [[rule]]
        id = "any-change"
        source = "podero.wallbox"
        event = "changed"
        if = "true"
        channels = ["partner"]
        """,
    )
    box = wallbox()

    assert fired(rs, None, box, kind="appeared") == ["appeared"]
    assert fired(rs, box, None, kind="disappeared") == ["disappeared"]
    assert fired(rs, box, wallbox(is_charging=True)) == ["any-change"]
    assert fired(rs, box, copy.deepcopy(box)) == []  # nothing changed: no changed rule runs


def test_an_appeared_rule_can_test_the_new_state(tmp_path):
    rs = one_rule(tmp_path, 'event = "appeared"\nif = "new.connection == \'online\'"')

    assert fired(rs, None, wallbox(), kind="appeared") == ["r"]
    assert fired(rs, None, wallbox(connection="offline"), kind="appeared") == []


def test_a_fieldless_changed_rule_runs_on_every_change_with_every_change_attached(tmp_path):
    rs = one_rule(tmp_path, 'event = "changed"\nif = "changes | length >= 2"')
    new = wallbox(is_charging=True, charge_rate_w=7200.0)

    [firing] = rs.evaluate(
        source=WB, kind="changed", old=wallbox(), new=new, changes=diff(wallbox(), new, source=WB)
    )

    assert [c.field for c in firing.changes] == ["charge_rate_w", "is_charging"]
    assert not fires(rs, wallbox(), wallbox(is_charging=True))


# -------------------------------------------------------------------------------------------- `if`


def test_if_sees_old_new_and_changes(tmp_path):
    rs = one_rule(
        tmp_path,
        'field = "charge_rate_w"\n'
        "if = \"new.charge_rate_w > old.charge_rate_w and changes[0].field == 'charge_rate_w' "
        'and new.is_charging"',
    )

    assert fires(rs, wallbox(is_charging=True), wallbox(is_charging=True, charge_rate_w=7200.0))
    assert not fires(rs, wallbox(), wallbox(charge_rate_w=7200.0))  # not charging
    assert not fires(rs, wallbox(charge_rate_w=7200.0, is_charging=True), wallbox(is_charging=True))


def test_if_can_test_for_null_since_toml_has_none(tmp_path):
    rs = one_rule(
        tmp_path, 'field = "deleted_at"\nif = "old.deleted_at is none and new.deleted_at is not none"'
    )

    assert fires(rs, wallbox(deleted_at=None), wallbox(deleted_at="2026-11-23T08:00:00Z"))
    assert not fires(
        rs, wallbox(deleted_at="2026-11-23T08:00:00Z"), wallbox(deleted_at="2026-11-24T08:00:00Z")
    )


@pytest.fixture
def logs(monkeypatch) -> LogCapture:
    """What the templates module logs (its logger replaced: a configured structlog caches loggers)."""
    capture = LogCapture()
    monkeypatch.setattr(templates, "log", structlog.wrap_logger(None, processors=[capture]))
    return capture


def test_an_if_that_errors_counts_as_false_and_is_logged(tmp_path, logs):
    rs = one_rule(tmp_path, "field = \"is_charging\"\nif = \"new['device_model']['missing'].deeper > 1\"")

    assert not fires(rs, wallbox(), wallbox(is_charging=True))

    [entry] = [e for e in logs.entries if e["event"] == "rule.condition_failed"]
    assert entry["rule"] == "r"
    assert entry["expression"] == "new['device_model']['missing'].deeper > 1"
    assert "missing" in entry["error"]


def test_an_if_on_a_disappeared_resource_that_reads_new_counts_as_false(tmp_path, logs):
    rs = one_rule(tmp_path, 'event = "disappeared"\nif = "new.is_charging"')

    assert fired(rs, wallbox(), None, kind="disappeared") == []
    assert [e["event"] for e in logs.entries] == ["rule.condition_failed"]


# ------------------------------------------------------------------------------- fields and paths


def test_a_change_under_the_rules_field_triggers_it(tmp_path):
    rs = one_rule(tmp_path, 'field = "device_model"')
    new = wallbox(device_model={"manufacturer": "Easee", "model": "Charge Max"})

    [firing] = rs.evaluate(
        source=WB, kind="changed", old=wallbox(), new=new, changes=diff(wallbox(), new, source=WB)
    )
    assert [c.field for c in firing.changes] == ["device_model.model"]


def test_a_change_beside_the_rules_field_does_not_trigger_it(tmp_path):
    rs = one_rule(tmp_path, 'field = "device_model.model"')

    assert not fires(rs, wallbox(), wallbox(device_model={"manufacturer": "Wallbox", "model": "Charge Lite"}))
    assert fires(rs, wallbox(), wallbox(device_model={"manufacturer": "Easee", "model": "Charge Max"}))


def test_a_field_that_merely_starts_with_the_same_letters_is_another_field(tmp_path):
    rs = one_rule(tmp_path, 'field = "is_charging"')

    assert not fires(rs, wallbox(), wallbox(is_charging_allowed=False))


def test_an_action_rule_fires_when_that_action_appears_but_not_for_another_code(tmp_path):
    rs = one_rule(tmp_path, 'field = "actions[reauthenticate]"\nif = "old is not none"')
    reauth = {"code": "reauthenticate", "resolution_link": {"url": "/cues/c1/resolve?secret=a"}}
    info = {"code": "information", "resolution_link": {"url": "/cues/c2/resolve?secret=b"}}

    assert fires(rs, wallbox(), wallbox(action_needed=True, actions=[reauth]))
    assert not fires(rs, wallbox(), wallbox(action_needed=True, actions=[info]))
    resigned = {**reauth, "resolution_link": {"url": "/cues/c1/resolve?secret=z"}}
    assert not fires(rs, wallbox(actions=[reauth]), wallbox(actions=[resigned]))


def test_a_rule_on_a_volatile_field_sees_it_change(tmp_path):
    rs = one_rule(tmp_path, 'field = "updated_at"\nchanged = true')

    assert fires(rs, wallbox(updated_at="2026-11-22T21:00:00Z"), wallbox(updated_at="2026-11-22T21:01:00Z"))


def test_a_rule_on_a_nested_volatile_field_sees_it_change(tmp_path):
    source = "realto.guided_onboarding_session"
    field = "onboardingRequest.data.entity.properties.updatedAt"  # `properties` is open: any key
    rs = one_rule(tmp_path, f'field = "{field}"\nchanged = true', source=source)

    def session(stamp: str) -> dict[str, Any]:
        return {
            "id": "s-1",
            "onboardingRequest": {
                "status": "Pending",
                "data": {"entity": {"properties": {"updatedAt": stamp}}},
            },
        }

    old, new = session("t1"), session("t2")
    changes = diff(old, new, source=source, keep=rs.keep_fields(source))
    firings = rs.evaluate(source=source, kind="changed", old=old, new=new, changes=changes)

    assert [(f.rule.id, [c.field for c in f.changes]) for f in firings] == [("r", [field])]
    assert diff(old, new, source=source) == []  # without the rule it is noise


# ------------------------------------------------------------------------------ order and the index


def test_firings_come_in_rule_order_whatever_the_order_of_the_changes(tmp_path):
    rs = rules(
        tmp_path,
        """
        [[rule]]
        id = "z-charging"
        source = "podero.wallbox"
        field = "is_charging"
        to = true
        channels = ["partner"]

        [[rule]]
        id = "a-anything"
        source = "podero.wallbox"
        if = "true"
        channels = ["partner"]

        [[rule]]
        id = "m-power"
        source = "podero.wallbox"
        field = "charge_rate_w"
        above = 1000
        channels = ["partner"]

        [[rule]]
        id = "b-charging-again"
        source = "podero.wallbox"
        field = "is_charging"
        changed = true
        channels = ["partner"]
        """,
    )

    new = wallbox(is_charging=True, charge_rate_w=7200.0)
    assert fired(rs, wallbox(), new) == ["z-charging", "a-anything", "m-power", "b-charging-again"]
    assert fired(rs, wallbox(), wallbox(is_charging=True)) == ["z-charging", "a-anything", "b-charging-again"]


def test_rules_of_another_source_never_fire(tmp_path):
    rs = one_rule(tmp_path, 'field = "status"', source="wattshift.onboarding")

    assert fired(rs, wallbox(status="IN_PROGRESS"), wallbox(status="COMPLETED")) == []


@pytest.mark.parametrize("many_changes", [False, True], ids=["one-change", "several-changes"])
def test_only_rules_watching_a_changed_field_or_no_field_are_evaluated(tmp_path, monkeypatch, many_changes):
    fields = ["is_charging", "charge_rate_w", "connection", "device_model.model", "owner.email"]
    text = "".join(
        f'[[rule]]\nid = "r{i}"\nsource = "podero.wallbox"\nfield = "{f}"\nchannels = ["ops"]\n'
        for i, f in enumerate(fields * 20)
    )
    text += '[[rule]]\nid = "fieldless"\nsource = "podero.wallbox"\nif = "true"\nchannels = ["ops"]\n'
    text += (
        '[[rule]]\nid = "other-source"\nsource = "wattshift.onboarding"\nif = "true"\nchannels = ["ops"]\n'
    )
    rs = rules(tmp_path, text)
    looked_at: Counter[str] = Counter()  # rules the engine considered at all (matched a change or not)
    original = Rule.watches

    def counting(self: Rule, path: str) -> bool:
        looked_at[self.field or self.id] += 1
        return original(self, path)

    monkeypatch.setattr(Rule, "watches", counting)
    new = wallbox(is_charging=True, charge_rate_w=7200.0) if many_changes else wallbox(is_charging=True)
    changes = 2 if many_changes else 1

    ids = fired(rs, wallbox(), new)

    expected = {"is_charging": 20 * changes, "fieldless": changes}
    if many_changes:
        expected["charge_rate_w"] = 20 * changes
    assert dict(looked_at) == expected
    assert len(ids) == 20 * changes + 1
