"""Enum-aware rules: a value no documented enum value of its field can equal is a `check` error naming
FILE:LINE: key, with "did you mean"; documented values (and fields without a known enum) load."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.rules.enums import ENUMS
from bridge.rules.fields import field_problem
from bridge.rules.loader import load_file


def problems_of(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "rules.toml"
    path.write_text(textwrap.dedent(body))
    _, found = load_file(path, base_dir=tmp_path, channels=["ops"])
    return [str(p) for p in found]


@pytest.mark.parametrize(
    ("source", "field", "match", "value", "hint"),
    [
        pytest.param("podero.wallbox", "mode", "to", '"CHARGIN"', "CHARGING", id="wallbox-mode-typo"),
        pytest.param(
            "wattshift.onboarding", "status", "to", '"COMPLETE"', "COMPLETED", id="wattshift-complete"
        ),
        pytest.param("podero.onboarding_session", "skip_to", "to", '"heatpump"', "hp", id="skip-to-heatpump"),
        pytest.param("realto.command", "status", "from", '"succeeded"', "Succeeded", id="command-case"),
        pytest.param(
            "podero.electric_vehicle",
            "boost_state",
            "not_to",
            '["requested", "ongoin"]',
            "ongoing",
            id="boost-state-in-a-list",
        ),
        pytest.param(
            "realto.guided_onboarding_session",
            "onboardingRequest.status",
            "to",
            '"Success"',
            "Succeeded",
            id="realto-request-status",
        ),
    ],
)
def test_an_undocumented_value_is_an_error_at_its_line_with_a_suggestion(
    tmp_path, source, field, match, value, hint
):
    found = problems_of(
        tmp_path,
        f"""
        [[rule]]
        id = "r"
        source = "{source}"
        field = "{field}"
        {match} = {value}
        channels = ["ops"]
        """,
    )
    [problem] = found
    assert problem.startswith(f"{tmp_path / 'rules.toml'}:6: rule[0].{match}: ")
    assert f"is not a documented value of {field} in {source}" in problem
    assert problem.endswith(f"did you mean {hint!r}?")


def test_a_value_nothing_resembles_gets_the_list_but_no_guess(tmp_path):
    [problem] = problems_of(
        tmp_path,
        """
        [[rule]]
        id = "r"
        source = "realto.command"
        field = "type"
        to = "Reboot"
        channels = ["ops"]
        """,
    )
    assert "(Disconnect, LimitFeedIn, StartCharging, StopCharging, Reset, StopFeedIn)" in problem
    assert "did you mean" not in problem


def test_documented_values_and_fields_without_a_known_enum_load(tmp_path):
    assert (
        problems_of(
            tmp_path,
            """
            [[rule]]
            id = "a"
            source = "podero.electric_vehicle"
            field = "boost_state"
            to = "requested"
            channels = ["ops"]

            [[rule]]
            id = "b"
            source = "podero.heat_pump"
            field = "lifecycle_state"
            to = "whatever-podero-adds"
            channels = ["ops"]

            [[rule]]
            id = "c"
            source = "realto.command"
            field = "status"
            to = ["Failed", "Canceled"]
            channels = ["ops"]
            """,
        )
        == []
    )


def test_every_enum_names_a_catalogued_field():
    for source, fields in ENUMS.items():
        for path in fields:
            assert field_problem(source, path) is None, (source, path)
