"""Rule files that cannot load say where and why, as `FILE:LINE: key: message`, every problem at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.errors import RuleError
from bridge.rules.engine import RuleSet
from bridge.rules.loader import load_rules

CHANNELS = ("partner", "ops")


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def load(folder: Path, *patterns: str) -> RuleSet:
    return load_rules(list(patterns) or ["*.toml"], base_dir=folder, channels=CHANNELS)


def problems(folder: Path, *patterns: str) -> list[str]:
    with pytest.raises(RuleError) as info:
        load(folder, *patterns)
    return [str(p) for p in info.value.problems]


GOOD = """
[[rule]]
id = "charging-started"
source = "podero.wallbox"
field = "is_charging"
from = false
to = true
channels = ["partner"]
"""


def test_a_valid_file_loads_its_rules_with_their_line(tmp_path):
    path = write(tmp_path, "wallbox.toml", GOOD)

    rs = load(tmp_path)

    [rule] = rs.rules
    assert (rule.id, rule.file, rule.line, rule.type) == (
        "charging-started",
        str(path),
        1,
        "charging-started",
    )


def test_an_unknown_channel_names_the_file_line_and_the_known_channels(tmp_path):
    path = write(
        tmp_path,
        "wallbox.toml",
        """
        [[rule]]
        id = "charging-started"
        source = "podero.wallbox"
        field = "is_charging"
        to = true
        channels = ["partner", "opz"]
        """,
    )

    assert problems(tmp_path) == [
        f"{path}:6: rule[0].channels: unknown channel 'opz' (known: ops, partner); did you mean 'ops'?"
    ]


def test_an_unknown_channel_with_no_channel_configured_says_so(tmp_path):
    write(tmp_path, "wallbox.toml", GOOD)

    with pytest.raises(RuleError) as info:
        load_rules(["*.toml"], base_dir=tmp_path, channels=())

    assert "unknown channel 'partner' (known: none configured)" in str(info.value)


def test_an_unknown_key_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "wallbox.toml", GOOD.replace("to = true", 'to = true\nseverty = "warning"'))

    assert problems(tmp_path) == [f"{path}:7: rule[0].severty: unknown key (check its spelling)"]


def test_an_unknown_key_in_the_email_table_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "wallbox.toml", GOOD + '\n[rule.email]\nsubject = "x"\nbdy = "y"\n')

    assert problems(tmp_path) == [f"{path}:11: rule[0].email.bdy: unknown key (check its spelling)"]


@pytest.mark.parametrize("value", ['"5 minutes"', '"-5m"', '"0s"', "true"])
def test_a_bad_duration_is_refused_with_its_line_and_the_users_key_name(tmp_path, value):
    path = write(tmp_path, "wallbox.toml", GOOD.replace("to = true", f"to = true\nfor = {value}"))

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:7: rule[0].for: ")
    assert "Value error" not in problem  # the validator's own words only


@pytest.mark.parametrize("value", ["{a = 1}", "[1, [2]]", "2026-11-23T08:00:00Z"])
def test_a_bad_from_value_is_one_problem_under_its_toml_name(tmp_path, value):
    path = write(tmp_path, "wallbox.toml", GOOD.replace("from = false", f"from = {value}"))

    assert problems(tmp_path) == [
        f"{path}:5: rule[0].from: expected a value (true/false, a number, a string) or a list of them"
    ]


def test_a_duplicate_id_across_files_names_both_places(tmp_path):
    first = write(tmp_path, "a.toml", GOOD)
    second = write(tmp_path, "b.toml", "# the same rule again\n\n" + GOOD)

    assert problems(tmp_path) == [
        f"{second}:4: id: duplicate rule id 'charging-started' (first at {first}:1)"
    ]


def test_a_toml_syntax_error_names_its_line(tmp_path):
    path = write(tmp_path, "wallbox.toml", GOOD.replace("to = true", "to = tru"))

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:6: TOML syntax error: ")


def test_an_if_that_does_not_compile_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "wallbox.toml", GOOD.replace("to = true", 'to = true\nif = "new.is_charging and"'))

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:7: rule[0].if: does not compile: ")


def test_a_template_that_does_not_compile_is_refused_with_its_line(tmp_path):
    path = write(tmp_path, "wallbox.toml", GOOD + '\n[rule.email]\nsubject = "{{ new.owner.email "\n')

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:10: rule[0].email.subject: does not compile: ")


def test_a_template_file_that_does_not_compile_is_refused_at_the_line_that_names_it(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "broken.txt").write_text("{% for a in new.actions %}{{ a.code }}\n")
    path = write(tmp_path, "wallbox.toml", GOOD + '\n[rule.email]\nbody = "templates/broken.txt"\n')

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:10: rule[0].email.body: does not compile: ")


def test_a_missing_template_file_is_named(tmp_path):
    path = write(tmp_path, "wallbox.toml", GOOD + '\n[rule.email]\nbody = "templates/nope.txt"\n')

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:10: rule[0].email.body: cannot read template file ")
    assert str(tmp_path / "templates" / "nope.txt") in problem


def test_a_template_file_is_read_relative_to_the_base_dir(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "ok.txt").write_text("Actions: {{ new.actions | length }}\n")
    write(tmp_path, "wallbox.toml", GOOD + '\n[rule.email]\nbody = "templates/ok.txt"\n')

    rs = load(tmp_path)

    _, body = rs.render_email(rs.rules[0], context={"new": {"actions": [1, 2]}, "changes": [], "event": {}})
    assert body == "Actions: 2\n"


@pytest.mark.parametrize(
    ("source", "field", "suggestion"),
    [
        ("podero.wallbox", "is_chargng", "is_charging"),
        ("podero.wallbox", "device_model.modle", "device_model.model"),
        ("podero.onboarding_session", "objectid", "object_id"),
        ("realto.guided_onboarding_session", "onboardingRequest.stauts", "onboardingRequest.status"),
        ("wattshift.onboarding", "Status", "status"),
        ("bridge.provider", "consecutive_failure", "consecutive_failures"),
    ],
)
def test_a_field_the_source_does_not_have_is_refused_with_the_closest_name(
    tmp_path, source, field, suggestion
):
    path = write(
        tmp_path,
        "r.toml",
        f"""
        [[rule]]
        id = "r"
        source = "{source}"
        field = "{field}"
        channels = ["ops"]
        """,
    )

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:4: rule[0].field: '{field.rsplit('.', 1)[-1]}': unknown field of ")
    assert problem.endswith(f"did you mean {suggestion!r}?")
    assert source in problem


@pytest.mark.parametrize(
    ("source", "field"),
    [
        ("podero.wallbox", "device_model.device_type.short_name"),
        ("podero.wallbox", "actions[reauthenticate]"),
        ("podero.wallbox", "actions[information].metadata.message"),
        ("podero.onboarding_session", "external_metadata.partner_ref"),
        ("realto.guided_onboarding_session", "onboardingRequest.data.entity.id"),
        ("bridge.channel", "paused_until"),
    ],
)
def test_fields_inside_documented_and_open_parts_of_a_payload_load(tmp_path, source, field):
    write(
        tmp_path,
        "r.toml",
        f'[[rule]]\nid = "r"\nsource = "{source}"\nfield = "{field}"\nchannels = ["ops"]\n',
    )

    assert load(tmp_path).rules[0].field == field


def test_a_path_below_a_single_value_is_refused(tmp_path):
    write(
        tmp_path,
        "r.toml",
        '[[rule]]\nid = "r"\nsource = "podero.wallbox"\nfield = "is_charging.now"\nchannels = ["ops"]\n',
    )

    [problem] = problems(tmp_path)

    assert "'is_charging' of podero.wallbox is a value: it has no field 'now'" in problem


def test_a_rule_file_pattern_that_matches_nothing_is_a_problem(tmp_path):
    assert problems(tmp_path, "rules/*.toml") == [
        f"rules/*.toml: rules.paths: no rule file matches 'rules/*.toml' (from {tmp_path})"
    ]


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    a = write(
        tmp_path,
        "a.toml",
        """
        [[rule]]
        id = "one"
        source = "podero.wallbox"
        field = "is_chargng"
        to = true
        if = "new.is_charging and"
        channels = ["partner", "slack"]

        [[rule]]
        id = "two"
        source = "podero.wallbox"
        field = "action_needed"
        to = true
        channels = ["ops"]

        [rule.email]
        subject = "{% if %}"
        body = "templates/missing.txt"
        """,
    )
    b = write(tmp_path, "b.toml", "[[rule]]\nid = \n")
    c = write(tmp_path, "c.toml", GOOD.replace("to = true", 'to = true\ncooldown = "soon"\nwhen = 1'))

    found = problems(tmp_path)

    where = sorted(p.split(" ", 1)[0] for p in found)
    assert where == sorted(
        [
            f"{a}:4:",  # field
            f"{a}:6:",  # if
            f"{a}:7:",  # channel
            f"{a}:17:",  # subject
            f"{a}:18:",  # body file
            f"{b}:2:",  # syntax
            f"{c}:7:",  # cooldown
            f"{c}:8:",  # unknown key
        ]
    )
