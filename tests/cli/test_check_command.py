"""`wattbridge check`: exit 0 on a valid config and rules, 1 with every problem as FILE:LINE: key: message."""

from __future__ import annotations

import shutil
import subprocess
import sys

from bridge.cli.main import main


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
        f"{tmp_path / 'rules' / 'bad.toml'}:6: rule[0].channels: unknown channel 'nope' "
        "(known: alertmanager, chat, homeassistant, ops, partner)" in err
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


def _check_rule(tmp_path, repo_root, capsys, rule: str) -> str:
    shutil.copy(repo_root / "config.example.toml", tmp_path / "config.toml")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "typo.toml").write_text(rule)
    assert main(["check", "-c", str(tmp_path / "config.toml")]) == 1
    return str(capsys.readouterr().err)


def test_a_misspelt_field_is_named_with_its_line_and_the_field_it_probably_meant(tmp_path, repo_root, capsys):
    err = _check_rule(
        tmp_path,
        repo_root,
        capsys,
        '[[rule]]\nid = "x"\nsource = "podero.wallbox"\nfield = "is_chargng"\nto = true\n'
        'channels = ["ops"]\n',
    )
    assert (
        f"{tmp_path / 'rules' / 'typo.toml'}:4: rule[0].field: 'is_chargng': unknown field of "
        "podero.wallbox; did you mean 'is_charging'?" in err
    )


def test_nested_fields_of_every_source_are_checked_against_its_payload_model(tmp_path, repo_root, capsys):
    rules = "".join(
        f'[[rule]]\nid = "r{i}"\nsource = "{source}"\nfield = "{field}"\nchanged = true\n'
        'channels = ["ops"]\n\n'
        for i, (source, field) in enumerate(
            [
                ("podero.wallbox", "device_model.modle"),
                ("podero.onboarding_session", "objectid"),
                ("realto.guided_onboarding_session", "onboardingRequest.statsu"),
                ("wattshift.onboarding", "stauts"),
                ("bridge.provider", "consecutive_failure"),
                ("bridge.channel", "is_charging.value"),
            ]
        )
    )
    err = _check_rule(tmp_path, repo_root, capsys, rules)
    assert "did you mean 'device_model.model'?" in err
    assert "did you mean 'object_id'?" in err
    assert "did you mean 'onboardingRequest.status'?" in err
    assert "wattshift.onboarding; did you mean 'status'?" in err
    assert "did you mean 'consecutive_failures'?" in err
    assert "'is_charging': unknown field of bridge.channel" in err
    assert "6 problems in the rules" in err


def test_fields_read_by_if_expressions_and_email_templates_are_checked_too(tmp_path, repo_root, capsys):
    err = _check_rule(
        tmp_path,
        repo_root,
        capsys,
        '[[rule]]\nid = "x"\nsource = "podero.wallbox"\nfield = "action_needed"\nto = true\n'
        'if = "new.conection == \'online\'"\nchannels = ["ops"]\n\n[rule.email]\n'
        'subject = "{{ new.owner.emial }} {{ new.actions | length }}"\n',
    )
    path = tmp_path / "rules" / "typo.toml"
    assert (
        f"{path}:6: rule[0].if: 'conection': unknown field of podero.wallbox; did you mean 'connection'?"
        in err
    )
    assert f"{path}:10: rule[0].email.subject: 'emial': unknown field of owner" in err
    assert "2 problems in the rules" in err


def test_open_objects_documented_extras_and_action_items_are_accepted(tmp_path, repo_root, capsys):
    shutil.copy(repo_root / "config.example.toml", tmp_path / "config.toml")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "ok.toml").write_text(
        '[[rule]]\nid = "a"\nsource = "podero.wallbox"\nfield = "actions[information].metadata.message"\n'
        'changed = true\nchannels = ["ops"]\n\n'
        '[[rule]]\nid = "b"\nsource = "podero.wallbox"\nfield = "is_ocpp_connected"\nto = false\n'
        'if = "new.device_model.year and new.get(\'x\') is none"\nchannels = ["ops"]\n\n'
        '[[rule]]\nid = "c"\nsource = "realto.guided_onboarding_session"\n'
        'field = "onboardingRequest.data.collective.properties.anything"\n'
        'changed = true\nchannels = ["ops"]\n'
    )
    (tmp_path / "config.toml").write_text(
        (tmp_path / "config.toml")
        .read_text()
        .replace('paths = ["rules/*.toml"]', 'paths = ["rules/ok.toml"]')
    )
    assert main(["check", "-c", str(tmp_path / "config.toml")]) == 0, capsys.readouterr().err


def test_a_template_file_is_read_compiled_and_field_checked_and_a_missing_one_is_named(
    tmp_path, repo_root, capsys
):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "broken.txt").write_text("Plugged: {{ new.is_pluged_in }}\n")
    err = _check_rule(
        tmp_path,
        repo_root,
        capsys,
        '[[rule]]\nid = "a"\nsource = "podero.wallbox"\nfield = "is_plugged_in"\nto = true\n'
        'channels = ["ops"]\n\n[rule.email]\nbody = "templates/broken.txt"\n\n'
        '[[rule]]\nid = "b"\nsource = "podero.wallbox"\nfield = "is_plugged_in"\nto = true\n'
        'channels = ["ops"]\n\n[rule.email]\nbody = "templates/missing.txt"\n',
    )
    path = tmp_path / "rules" / "typo.toml"
    assert (
        f"{path}:9: rule[0].email.body: 'is_pluged_in': unknown field of podero.wallbox; did you mean" in err
    )
    assert (
        f"{path}:19: rule[1].email.body: cannot read template file '{tmp_path / 'templates' / 'missing.txt'}'"
        in err
    )


def test_a_rule_digest_needs_group_by_and_known_group_fields(tmp_path, repo_root, capsys):
    err = _check_rule(
        tmp_path,
        repo_root,
        capsys,
        '[[rule]]\nid = "a"\nsource = "podero.wallbox"\nfield = "is_charging"\nto = true\n'
        'group_wait = "1m"\nchannels = ["ops"]\n\n'
        '[[rule]]\nid = "b"\nsource = "podero.wallbox"\nfield = "is_charging"\nto = true\n'
        'group_by = ["rule", "owner"]\nchannels = ["ops"]\n',
    )
    path = tmp_path / "rules" / "typo.toml"
    assert f"{path}:1: rule[0]: `group_wait` / `group_interval` need `group_by`" in err
    assert f"{path}:14: rule[1].group_by[1]:" in err
    assert "'rule', 'source', 'provider', 'severity', 'type' or 'status'" in err


def test_a_rule_with_an_invalid_for_and_an_unknown_channel_reports_both(tmp_path, repo_root, capsys):
    shutil.copy(repo_root / "config.example.toml", tmp_path / "config.toml")
    (tmp_path / "rules").mkdir()
    bad = tmp_path / "rules" / "bad.toml"
    bad.write_text(
        '[[rule]]\nid = "x"\nsource = "podero.wallbox"\nfield = "is_charging"\nto = true\n'
        'for = "soon"\nchannels = ["partner", "nope"]\n'
        '\n[[rule]]\nid = "y"\nsource = "podero.wallbox"\nfield = "is_chargin"\nchannels = ["ops"]\n'
    )
    assert main(["check", "-c", str(tmp_path / "config.toml")]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:6: rule[0].for: " in err
    assert f"{bad}:7: rule[0].channels: unknown channel 'nope'" in err
    assert f"{bad}:12: rule[1].field: " in err  # the next rule is checked too
    assert "3 problems in the rules" in err


def test_a_config_typo_does_not_hide_the_rules_problems(tmp_path, repo_root, capsys):
    config = (repo_root / "config.example.toml").read_text()
    (tmp_path / "config.toml").write_text(config.replace("[server]", "[server]\nlistn = 1", 1))
    (tmp_path / "rules").mkdir()
    bad = tmp_path / "rules" / "bad.toml"
    bad.write_text(
        '[[rule]]\nid = "x"\nsource = "podero.wallbox"\nfield = "is_charging"\nchannels = ["nope"]\n'
    )
    assert main(["check", "-c", str(tmp_path / "config.toml")]) == 1
    err = capsys.readouterr().err
    assert "server.listn: unknown key (check its spelling)" in err
    assert f"{bad}:5: rule[0].channels: unknown channel 'nope'" in err
    assert "1 problem in the config and 1 problem in the rules" in err


def test_rules_that_repeat_without_a_public_url_get_a_note_not_an_error(repo_root, capsys, monkeypatch):
    monkeypatch.chdir(repo_root)
    assert main(["check", "-c", "config.example.toml"]) == 0
    captured = capsys.readouterr()
    assert "OK" in captured.out
    assert (
        "but [server] public_url is unset: their notifications carry no acknowledge / snooze links"
        in captured.out
    )
