"""`wattbridge check`: exit 0 on a valid config and rules, 1 with every problem as FILE:LINE: key: message."""

from __future__ import annotations

import shutil
import subprocess
import sys

from bridge.cli import main


def test_the_example_config_checks_clean(repo_root, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(["check", "-c", "config.example.toml"]) == 0
    assert "OK" in capsys.readouterr().out


def test_a_rule_naming_an_unknown_channel_fails_with_file_line_and_the_known_channels(
    tmp_path, repo_root, capsys
):
    shutil.copy(repo_root / "config.example.toml", tmp_path / "config.toml")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "bad.toml").write_text(
        '[[rule]]\nid = "x"\nsource = "podero.wallbox"\nfield = "is_charging"\nto = true\n'
        'channels = ["partner", "nope"]\n'
    )
    assert main(["check", "-c", str(tmp_path / "config.toml")]) == 1
    err = capsys.readouterr().err
    assert (
        f"{tmp_path / 'rules' / 'bad.toml'}:6: rule[0].channels: unknown channel 'nope' (known: ops, partner)"
        in err
    )
    assert "1 problem in the rules" in err


def test_check_runs_as_a_module_and_exits_1_on_a_bad_config(tmp_path):
    (tmp_path / "config.toml").write_text('[server]\nlisten = "nowhere"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(tmp_path / "config.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert f"{tmp_path / 'config.toml'}:2: server.listen:" in proc.stderr
