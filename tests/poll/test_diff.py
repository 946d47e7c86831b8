"""The diff stage: field-level changes by dotted path, volatile fields ignored (SPEC §4), Podero
`actions[]` compared by code and cue id rather than by their re-signed URL."""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.model import Change
from bridge.poll.diff import diff, flatten, get_path, is_volatile, meaningful_digest, parse_path

WB = "podero.wallbox"
CUE_A = "11111111-1111-4111-8111-111111111111"
CUE_B = "22222222-2222-4222-8222-222222222222"


def action(
    code: str = "reauthenticate", cue: str = CUE_A, secret: str = "s1", **extra: Any
) -> dict[str, Any]:
    url = f"/api/partners/v2.0/cues/{cue}/resolve?secret={secret}"
    return {"code": code, "resolution_link": {"url": url, "required_parameters": ["successUrl"]}, **extra}


def wallbox(**overrides: Any) -> dict[str, Any]:
    """A realistic seed-002 wallbox, trimmed to what these tests exercise."""
    state: dict[str, Any] = {
        "connection_status": "ok",
        "device_model": {
            "device_type": {"short_name": "wallbox", "long_name": "Wallbox"},
            "manufacturer": "Easee",
            "model": "Charge Lite",
        },
        "owner": {"id": "u-1", "email": "ada@example.com"},
        "id": "wb-1",
        "created_at": "2026-11-22T21:00:00Z",
        "updated_at": "2026-11-22T21:00:00Z",
        "deleted_at": None,
        "optimization_score": 0.82,
        "ocpp_connected_last_updated_at": "2026-11-22T21:00:00Z",
        "charge_state_last_updated_at": "2026-11-22T21:00:00Z",
        "consumption_last_day_kwh": "4.210",
        "is_ocpp_connected": True,
        "is_charging": False,
        "charge_rate_w": 0.0,
        "action_needed": False,
        "actions": [],
    }
    state.update(overrides)
    return state


def fields(changes: list[Change]) -> list[str]:
    return [c.field for c in changes]


# ------------------------------------------------------------------------------------ paths and leaves


def test_an_identical_state_has_no_changes():
    assert diff(wallbox(), wallbox(), source=WB) == []


def test_a_nested_field_is_reported_by_its_dotted_path():
    old = wallbox()
    new = copy.deepcopy(old)
    new["device_model"]["model"] = "Charge Max"

    assert diff(old, new, source=WB) == [
        Change(field="device_model.model", old="Charge Lite", new="Charge Max")
    ]


def test_a_deeply_nested_field_is_reported_by_its_full_path():
    old = wallbox()
    new = copy.deepcopy(old)
    new["device_model"]["device_type"]["short_name"] = "charger"

    assert fields(diff(old, new, source=WB)) == ["device_model.device_type.short_name"]


def test_changes_are_sorted_by_field():
    new = wallbox(is_charging=True, charge_rate_w=7200.0, connection_status="warning")

    assert fields(diff(wallbox(), new, source=WB)) == ["charge_rate_w", "connection_status", "is_charging"]


def test_an_added_key_reports_none_as_its_old_value_and_a_removed_key_none_as_its_new_value():
    old = wallbox()
    new = wallbox(firmware_version="4.12.1")
    del new["is_ocpp_connected"]

    assert diff(old, new, source=WB) == [
        Change(field="firmware_version", old=None, new="4.12.1"),
        Change(field="is_ocpp_connected", old=True, new=None),
    ]


def test_a_null_field_that_goes_missing_is_no_change():
    # Schema drift (seed 001 omits what seed 002 sends as null): rules read both as None.
    old = wallbox(lifecycle_error=None)
    new = wallbox()

    assert diff(old, new, source=WB) == []
    assert diff(new, old, source=WB) == []


def test_a_type_change_is_a_change_even_when_python_calls_the_values_equal():
    assert diff({"x": 1}, {"x": True}, source=WB) == [Change(field="x", old=1, new=True)]
    assert diff({"x": False}, {"x": 0}, source=WB) == [Change(field="x", old=False, new=0)]
    assert diff({"x": 1}, {"x": "1"}, source=WB) == [Change(field="x", old=1, new="1")]


def test_a_type_change_deep_in_an_object_python_calls_equal_is_a_change_too():
    old = {"a": {"b": {"on": 1}, "c": 2}}
    new = {"a": {"b": {"on": True}, "c": 2}}
    assert diff(old, new, source=WB) == [Change(field="a.b.on", old=1, new=True)]


def test_integers_and_the_same_floats_deep_in_an_object_are_no_change():
    assert diff({"a": {"w": 7200, "l": [1]}}, {"a": {"w": 7200.0, "l": [1.0]}}, source=WB) == []


def test_an_integer_and_the_same_float_are_no_change():
    # Pydantic prints a `number` as 7200.0, an older Podero as 7200: the JSON value is the same.
    assert diff({"charge_rate_w": 7200}, {"charge_rate_w": 7200.0}, source=WB) == []


def test_an_object_replaced_by_null_reports_each_of_its_leaves():
    old = wallbox()
    new = wallbox(device_model=None)

    assert diff(old, new, source=WB) == [
        Change(field="device_model.device_type.long_name", old="Wallbox", new=None),
        Change(field="device_model.device_type.short_name", old="wallbox", new=None),
        Change(field="device_model.manufacturer", old="Easee", new=None),
        Change(field="device_model.model", old="Charge Lite", new=None),
    ]


def test_a_scalar_that_becomes_an_object_reports_the_new_leaves():
    assert diff({"lifecycle_error": None}, {"lifecycle_error": {"code": 7}}, source=WB) == [
        Change(field="lifecycle_error.code", old=None, new=7)
    ]


# ------------------------------------------------------------------------------------------- lists


def test_a_plain_list_is_compared_as_one_value():
    old = {"required_parameters": ["successUrl"]}
    new = {"required_parameters": ["successUrl", "cancelUrl"]}

    assert diff(old, new, source=WB) == [
        Change(field="required_parameters", old=["successUrl"], new=["successUrl", "cancelUrl"])
    ]


def test_a_reordered_plain_list_is_a_change():
    assert fields(diff({"phases": [1, 3]}, {"phases": [3, 1]}, source=WB)) == ["phases"]


def test_a_list_of_objects_without_a_code_is_compared_as_one_value_without_its_volatile_fields():
    old = {"sessions": [{"id": "a", "updated_at": "t1"}]}
    moved = {"sessions": [{"id": "a", "updated_at": "t2"}]}
    renamed = {"sessions": [{"id": "b", "updated_at": "t2"}]}

    assert diff(old, moved, source=WB) == []
    assert diff(old, renamed, source=WB) == [Change(field="sessions", old=[{"id": "a"}], new=[{"id": "b"}])]
    assert meaningful_digest(old, source=WB) == meaningful_digest(moved, source=WB)


# ---------------------------------------------------------------------------------- Podero actions


def test_a_resigned_action_url_is_no_change():
    old = wallbox(action_needed=True, actions=[action(secret="first")])
    new = wallbox(action_needed=True, actions=[action(secret="second")])

    assert diff(old, new, source=WB) == []
    assert meaningful_digest(old, source=WB) == meaningful_digest(new, source=WB)


def test_an_action_appearing_is_one_change_keyed_by_its_code_without_its_secret():
    old = wallbox()
    new = wallbox(action_needed=True, actions=[action(secret="do-not-leak")])

    changes = diff(old, new, source=WB)

    assert fields(changes) == ["action_needed", "actions[reauthenticate]"]
    [added] = [c for c in changes if c.field == "actions[reauthenticate]"]
    assert added.old is None
    assert added.new["code"] == "reauthenticate"
    assert added.new["resolution_link"]["url"] == f"/api/partners/v2.0/cues/{CUE_A}/resolve"
    assert "do-not-leak" not in repr(changes)


def test_an_action_resolved_is_one_change_to_none():
    old = wallbox(action_needed=True, actions=[action()])
    new = wallbox()

    changes = diff(old, new, source=WB)

    assert fields(changes) == ["action_needed", "actions[reauthenticate]"]
    assert changes[1].new is None


def test_the_same_code_on_a_new_cue_is_a_change_of_that_action():
    old = wallbox(action_needed=True, actions=[action(cue=CUE_A)])
    new = wallbox(action_needed=True, actions=[action(cue=CUE_B)])

    [change] = diff(old, new, source=WB)

    assert change.field == "actions[reauthenticate]"
    assert CUE_A in change.old["resolution_link"]["url"]
    assert CUE_B in change.new["resolution_link"]["url"]


def test_actions_with_different_codes_are_compared_independently_of_their_order():
    info = action("information", cue=CUE_B, metadata={"message": "hi"}, sent_at="2026-11-22T21:00:00Z")
    old = wallbox(action_needed=True, actions=[action(secret="x"), info])
    new = wallbox(action_needed=True, actions=[{**info}, action(secret="y")])

    assert diff(old, new, source=WB) == []


def test_a_second_action_with_the_same_code_is_one_change_of_that_code():
    first = action("information", cue=CUE_A, metadata={"message": "one"})
    second = action("information", cue=CUE_B, metadata={"message": "two"})

    [change] = diff(wallbox(actions=[first]), wallbox(actions=[first, second]), source=WB)

    assert change.field == "actions[information]"
    assert change.old["metadata"] == {"message": "one"}
    assert [a["metadata"]["message"] for a in change.new] == ["one", "two"]


def test_actions_sharing_a_code_are_compared_by_cue_id_not_by_their_order():
    first = action("information", cue=CUE_A, metadata={"message": "one"})
    second = action("information", cue=CUE_B, metadata={"message": "two"})

    assert diff(wallbox(actions=[first, second]), wallbox(actions=[second, first]), source=WB) == []


def test_resolving_one_of_two_actions_with_a_code_changes_only_that_code():
    first = action("information", cue=CUE_A, metadata={"message": "one"})
    second = action("information", cue=CUE_B, metadata={"message": "two"})
    reauth = action("reauthenticate", cue="33333333-3333-4333-8333-333333333333")

    [change] = diff(wallbox(actions=[first, second, reauth]), wallbox(actions=[second, reauth]), source=WB)

    assert change.field == "actions[information]"
    assert change.new["metadata"] == {"message": "two"}


def test_an_unknown_action_code_is_kept_and_compared_like_the_others():
    old = wallbox(actions=[action("update_firmware", metadata={"version": "1"})])
    new = wallbox(actions=[action("update_firmware", metadata={"version": "2"})])

    assert fields(diff(old, new, source=WB)) == ["actions[update_firmware]"]


# -------------------------------------------------------------------------------- volatile fields


def test_fields_that_move_on_every_read_are_ignored():
    old = wallbox()
    new = wallbox(
        updated_at="2026-11-22T21:05:00Z",
        ocpp_connected_last_updated_at="2026-11-22T21:05:00Z",
        charge_state_last_updated_at="2026-11-22T21:05:00Z",
        optimization_score=0.9,
        consumption_last_day_kwh="4.300",
    )

    assert diff(old, new, source=WB) == []
    assert meaningful_digest(old, source=WB) == meaningful_digest(new, source=WB)


def test_a_volatile_field_nested_in_an_object_is_ignored_too():
    old = wallbox(owner={"id": "u-1", "updated_at": "t1"})
    new = wallbox(owner={"id": "u-1", "updated_at": "t2"})

    assert diff(old, new, source=WB) == []


def test_volatile_names_depend_on_the_source():
    # Podero's consumption counters are noise for the wallbox, not for a source that defines none.
    assert is_volatile("consumption_last_day_kwh", WB)
    assert not is_volatile("consumption_last_day_kwh", "wattshift.onboarding")
    assert is_volatile("updatedAt", "wattshift.onboarding")
    assert is_volatile("last_success_at", "bridge.provider")
    assert not is_volatile("status", "bridge.provider")
    assert is_volatile("anything_last_updated_at", "realto.guided_onboarding_session")


def test_a_volatile_field_a_rule_names_is_reported():
    old = wallbox()
    new = wallbox(updated_at="2026-11-22T21:05:00Z")

    assert diff(old, new, source=WB, keep=frozenset({"updated_at"})) == [
        Change(field="updated_at", old="2026-11-22T21:00:00Z", new="2026-11-22T21:05:00Z")
    ]
    assert meaningful_digest(old, source=WB, keep=frozenset({"updated_at"})) != meaningful_digest(
        new, source=WB, keep=frozenset({"updated_at"})
    )


def test_a_nested_volatile_field_a_rule_names_is_reported_and_only_that_one():
    old = wallbox(owner={"id": "u-1", "updated_at": "t1"})
    new = wallbox(owner={"id": "u-1", "updated_at": "t2"}, updated_at="2026-11-22T21:05:00Z")
    keep = frozenset({"owner.updated_at"})

    assert diff(old, new, source=WB, keep=keep) == [Change(field="owner.updated_at", old="t1", new="t2")]
    assert meaningful_digest(old, source=WB, keep=keep) != meaningful_digest(new, source=WB, keep=keep)


# ---------------------------------------------------------------------------------------- baseline


def test_no_old_state_reports_every_meaningful_leaf_as_new():
    new = wallbox(action_needed=True, actions=[action()])

    changes = diff(None, new, source=WB)

    assert all(c.old is None for c in changes)
    assert set(fields(changes)) == {k for k, v in flatten(new, source=WB).items() if v is not None}
    assert "updated_at" not in fields(changes)
    assert "actions[reauthenticate]" in fields(changes)


def test_no_new_state_reports_every_meaningful_leaf_as_gone():
    old = wallbox(is_charging=True)

    changes = diff(old, None, source=WB)

    assert {c.field for c in changes} == {k for k, v in flatten(old, source=WB).items() if v is not None}
    assert all(c.new is None for c in changes)
    assert meaningful_digest(None, source=WB) == "gone"


# ---------------------------------------------------------------------------------------- get_path


def test_get_path_reads_nested_fields_and_actions_by_code():
    state = wallbox(actions=[action("information", cue=CUE_B), action()])

    assert get_path(state, "device_model.device_type.short_name") == "wallbox"
    assert get_path(state, "actions[reauthenticate]")["code"] == "reauthenticate"
    assert get_path(state, "actions[reauthenticate].resolution_link.required_parameters") == ["successUrl"]
    assert get_path(state, "actions[update_firmware]") is None
    assert get_path(state, "device_model.model.deeper") is None
    assert get_path(state, "is_charging[x]") is None
    assert get_path(None, "is_charging") is None


def test_a_malformed_path_reads_as_absent():
    assert parse_path("a..b") is None
    assert get_path({"a": {"b": 1}}, "a..b") is None
    assert parse_path("actions[reauthenticate].url") == (("actions", "reauthenticate"), ("url", None))


# ---------------------------------------------------------------------------------------- properties

_keys = st.sampled_from(["a", "b", "c", "status", "updated_at", "x_last_updated_at", "optimization_score"])
_scalars = st.one_of(
    st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False, width=16), st.text(max_size=3)
)
_codes = st.sampled_from(["reauthenticate", "information", "update_firmware"])
_cues = st.sampled_from([CUE_A, CUE_B, "33333333-3333-4333-8333-333333333333"])
_actions = st.lists(
    st.builds(action, code=_codes, cue=_cues, secret=st.text("abc", max_size=4)),
    max_size=3,
    unique_by=lambda a: (a["code"], a["resolution_link"]["url"].split("?")[0]),  # one item per cue
)
_json = st.recursive(
    _scalars | st.lists(_scalars, max_size=3),
    lambda children: st.dictionaries(_keys, children, max_size=4),
    max_leaves=12,
)
_states = st.fixed_dictionaries({"actions": _actions}, optional={"x": _json, "y": _json, "status": _scalars})


def _meaningful(state: dict[str, Any] | None) -> dict[str, Any]:
    return flatten(state, source=WB)


@settings(max_examples=60, deadline=None)
@given(_states)
def test_a_state_never_differs_from_itself(state):
    assert diff(state, copy.deepcopy(state), source=WB) == []


@settings(max_examples=60, deadline=None)
@given(_states, _states)
def test_applying_the_reported_changes_to_the_old_state_rebuilds_the_new_one(old, new):
    changes = diff(old, new, source=WB)
    rebuilt = _meaningful(old)
    for change in changes:
        assert change.old == rebuilt.get(change.field)
        rebuilt[change.field] = change.new

    def present(flat: dict[str, Any]) -> dict[str, Any]:
        # Null and absent read the same; an empty `actions` list and no `actions[code]` items too.
        return {k: v for k, v in flat.items() if v is not None and v != []}

    assert present(rebuilt) == present(_meaningful(new))
    assert len(set(fields(changes))) == len(changes)


@settings(max_examples=60, deadline=None)
@given(_states, _states)
def test_a_state_with_changes_never_shares_the_digest_that_lets_a_poll_skip_it(old, new):
    # The poller writes nothing when the digests match: a meaningful change must move the digest.
    if diff(old, new, source=WB):
        assert meaningful_digest(old, source=WB) != meaningful_digest(new, source=WB)


@settings(max_examples=60, deadline=None)
@given(_states, st.text(max_size=5), st.integers())
def test_only_volatile_fields_moving_is_no_change_and_the_same_digest(state, stamp, score):
    moved = copy.deepcopy(state)
    moved["updated_at"] = stamp
    moved["charge_state_last_updated_at"] = stamp
    moved["optimization_score"] = score
    for item in moved["actions"]:
        item["resolution_link"]["url"] += "x"  # a re-signed secret

    assert diff(state, moved, source=WB) == []
    assert meaningful_digest(state, source=WB) == meaningful_digest(moved, source=WB)


@settings(max_examples=60, deadline=None)
@given(st.data(), _states)
def test_the_order_of_the_actions_never_matters(data, state):
    shuffled = copy.deepcopy(state)
    shuffled["actions"] = data.draw(st.permutations(state["actions"]))

    assert diff(state, shuffled, source=WB) == []
    assert meaningful_digest(state, source=WB) == meaningful_digest(shuffled, source=WB)


@settings(max_examples=60, deadline=None)
@given(_states, st.lists(_keys, min_size=1, max_size=3).map(".".join))
def test_a_rule_on_fields_that_are_not_volatile_leaves_the_digest_as_without_rules(state, path):
    # Most rule sets name only meaningful fields: the digest is then the one without rules (its
    # fast path; a kept path changes the digest only when it passes through a volatile field).
    if not any(is_volatile(step, WB) for step in path.split(".")):
        assert meaningful_digest(state, source=WB, keep=frozenset({path})) == meaningful_digest(
            state, source=WB
        )


@settings(max_examples=60, deadline=None)
@given(_states)
def test_a_volatile_field_a_rule_names_moves_the_digest(state):
    a = {**state, "updated_at": "2026-12-03T00:00:00Z"}
    b = {**state, "updated_at": "2026-12-03T00:00:01Z"}
    kept = frozenset({"updated_at", "is_charging"})
    assert meaningful_digest(a, source=WB, keep=kept) != meaningful_digest(b, source=WB, keep=kept)
    assert meaningful_digest(a, source=WB) == meaningful_digest(b, source=WB)


# The specification `diff` is held to: every path either side flattens to, compared as a value.
# (`diff` itself flattens only the fields that are not identical on both sides.)
def _diff_by_flattening(old: Any, new: Any, keep: frozenset[str]) -> list[Change]:
    before, after = flatten(old, source=WB, keep=keep), flatten(new, source=WB, keep=keep)
    out = []
    for path in before.keys() | after.keys():
        a, b = before.get(path), after.get(path)
        same = a == b and type(a) is type(b) if isinstance(a, bool) or isinstance(b, bool) else a == b
        emptied = any(
            v == [] and w is None and path not in side and any(k.startswith(path + "[") for k in side)
            for v, w, side in ((a, b, after), (b, a, before))
        )
        if not (same or emptied):
            out.append(Change(field=path, old=a, new=b))
    return sorted(out, key=lambda c: c.field)


# Names that flatten onto each other's paths ("a.b" and "a" holding "b"), and true against 1.
_odd_keys = st.sampled_from(["a", "b", "a.b", "actions", "actions[information]", "updated_at", "is_on"])
_odd_scalars = st.one_of(st.booleans(), st.integers(0, 1), st.sampled_from([0.0, 1.0, None, "1"]))
_odd_json = st.recursive(
    _odd_scalars | st.lists(_odd_scalars, max_size=2) | _actions,
    lambda children: st.dictionaries(_odd_keys, children, max_size=4),
    max_leaves=10,
)
_odd_states = st.dictionaries(_odd_keys, _odd_json, max_size=5)


@settings(max_examples=300, deadline=None)
@given(
    _odd_states,
    st.data(),
    st.sets(st.sampled_from(["updated_at", "a.updated_at", "a.b", "is_on"]), max_size=2).map(frozenset),
)
def test_diff_reports_exactly_what_flattening_both_states_reports(old, data, keep):
    # The new state is often the old one with a little changed, as a poll sees it.
    new = data.draw(st.one_of(_odd_states, st.just(copy.deepcopy(old)).flatmap(_nudged)))
    assert diff(old, new, source=WB, keep=keep) == _diff_by_flattening(old, new, keep)


def _nudged(state: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`state` with one top-level or nested value replaced (true for 1, a dict for a leaf, ...)."""

    def put(value: Any) -> dict[str, Any]:
        out = copy.deepcopy(state)
        target = out
        for key in list(out):
            if isinstance(out[key], dict) and out[key]:
                target = out[key]  # a nested field, when there is one
                break
        name = next(iter(target), "a")
        target[name] = value
        return out

    return _odd_json.map(put)
