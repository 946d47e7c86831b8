"""The escalation example (#14) as a rule-file test: its timeline acknowledges one wallbox, snoozes
the other, and the notifications are exactly the expected ones; a bad `ack` line is FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli.main import main

RULES = ["--rules", "rules/examples/escalation.toml"]
TIMELINE = "rules/examples/escalation.jsonl"
EXPECT = "rules/examples/escalation.expect.toml"


@pytest.fixture(autouse=True)
def _at_repo(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)


def run(*extra: str) -> int:
    return main(["rules", "test", "-c", "config.example.toml", *RULES, *extra])


def test_the_escalation_example_meets_its_expectations(capsys):
    assert run("--timeline", TIMELINE, "--expect", EXPECT) == 0
    assert capsys.readouterr().out.strip() == f"{EXPECT}: OK (9 notification(s), 1 digest(s) as expected)"


def test_the_story_shows_the_ack_the_snooze_and_the_escalation_step(capsys):
    assert run("--timeline", TIMELINE, "--brief") == 0
    out = capsys.readouterr().out
    assert (
        "ACKNOWLEDGED wallbox-needs-owner podero.wallbox 00000000-0000-4000-8000-0000000000b1 by ada" in out
    )
    assert (
        "SNOOZED wallbox-needs-owner podero.wallbox 00000000-0000-4000-8000-0000000000b2 by bo until" in out
    )
    assert "2026-11-22T21:35:00Z  FIRING (escalation 1) wallbox-needs-owner" in out


def test_an_ack_of_what_does_not_fire_is_told_and_a_bad_ack_line_is_refused_at_its_line(
    tmp_path: Path, capsys
):
    lines = Path(TIMELINE).read_text().splitlines()
    early = tmp_path / "early.jsonl"
    ack_b1 = next(line for line in lines if '"ack"' in line and "b1" in line)
    early.write_text("\n".join([*lines[:8], ack_b1.replace("21:15:00", "21:00:00")]) + "\n")
    assert run("--timeline", str(early), "--brief") == 0
    assert "ACK REFUSED wallbox-needs-owner 00000000-0000-4000-8000-0000000000b1: " in capsys.readouterr().out

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"at": "2026-11-22T21:00:00Z", "ack": "wallbox-needs-owner"}\n')
    assert run("--timeline", str(bad)) == 1
    assert f"{bad}:1: " in capsys.readouterr().err
