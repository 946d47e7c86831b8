"""`wattbridge rules test --timeline … --expect FILE` (#14): a rule file's unit test, promtool-style.
Exit 0 when the timeline causes exactly the listed notifications and digests; exit 1 naming each
difference at FILE:LINE otherwise; a bad key of the file is FILE:LINE too."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli.main import main

TIMELINE = ["--timeline", "rules/examples/wallbox-offline.jsonl", "--rule", "wallbox-disconnected"]
EXPECT = "rules/examples/wallbox-offline.expect.toml"


def run(*extra: str) -> int:
    return main(["rules", "test", "-c", "config.example.toml", *TIMELINE, *extra])


@pytest.fixture(autouse=True)
def _at_repo(repo_root, monkeypatch):
    monkeypatch.chdir(repo_root)


def test_the_example_expectations_hold(capsys):
    assert run("--expect", EXPECT) == 0
    assert capsys.readouterr().out.strip() == f"{EXPECT}: OK (3 notification(s), 3 digest(s) as expected)"


def test_a_wrong_status_fails_at_its_line_and_shows_what_happened(tmp_path: Path, capsys):
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(Path(EXPECT).read_text().replace('status = "resolved"', 'status = "firing"'))

    assert run("--expect", str(wrong)) == 1

    out = capsys.readouterr().out
    assert f"FAILED {wrong}:16: notification[2]: expected status firing, got resolved" in out
    assert "What the timeline caused:" in out


def test_a_missing_and_an_unexpected_notification_both_fail(tmp_path: Path, capsys):
    text = Path(EXPECT).read_text()
    fewer = tmp_path / "fewer.toml"
    fewer.write_text(
        text.split("[[notification]]\nat = 2026-11-23T11:00:00Z")[0] + text.split('status = "resolved"')[1]
    )
    more = tmp_path / "more.toml"
    more.write_text(text + '\n[[notification]]\nrule = "wallbox-disconnected"\n')

    assert run("--expect", str(fewer)) == 1
    assert "notification: not expected: resolved wallbox-disconnected" in capsys.readouterr().out
    assert run("--expect", str(more)) == 1
    assert "notification[3]: missing: firing wallbox-disconnected" in capsys.readouterr().out


def test_an_unknown_key_is_refused_at_its_line(tmp_path: Path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[notification]]\nrule = "wallbox-disconnected"\nstatuss = "firing"\n')

    assert run("--expect", str(bad)) == 1

    assert f"{bad}:3: notification[0].statuss: unknown key" in capsys.readouterr().err
