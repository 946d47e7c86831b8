"""`wattbridge rules test`: the README's examples run as written and print what the README shows;
bad input exits 1 naming the file and line; nothing is sent and nothing is stored."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from bridge.cli.main import main

EXAMPLE = re.compile(r"```console\n\$ (wattbridge rules test [^\n]*)\n(.*?)\n```", re.S)


def _readme_examples(repo_root: Path) -> list[tuple[str, str]]:
    return EXAMPLE.findall((repo_root / "README.md").read_text())


def test_every_example_in_rules_examples_is_shown_in_the_readme(repo_root):
    shown = " ".join(cmd for cmd, _ in _readme_examples(repo_root))
    examples = sorted((repo_root / "rules" / "examples").iterdir())
    assert examples
    for path in examples:
        assert f"rules/examples/{path.name}" in shown, f"{path.name} has no README example"


README_EXAMPLES = len(_readme_examples(Path(__file__).resolve().parents[2]))


@pytest.mark.parametrize("index", range(README_EXAMPLES))
def test_the_readme_examples_print_exactly_what_the_readme_shows(index, repo_root, monkeypatch, capsys):
    examples = _readme_examples(repo_root)
    assert len(examples) == README_EXAMPLES >= 10
    command, expected = examples[index]
    monkeypatch.chdir(repo_root)
    assert main(shlex.split(command)[1:]) == 0
    out = capsys.readouterr().out
    assert [line.rstrip() for line in out.rstrip("\n").splitlines()] == [
        line.rstrip() for line in expected.splitlines()
    ]


def test_the_timeline_example_shows_the_hold_its_break_the_firing_the_reminder_and_the_resolution(
    repo_root, monkeypatch, capsys
):
    monkeypatch.chdir(repo_root)
    argv = [
        "rules",
        "test",
        "-c",
        "config.example.toml",
        "--timeline",
        "rules/examples/wallbox-offline.jsonl",
    ]
    assert main([*argv, "--rule", "wallbox-disconnected", "--brief"]) == 0
    story = [line.split("  ", 1) for line in capsys.readouterr().out.splitlines() if line[:4] == "2026"]
    happened = [
        (at, text.split(" podero.wallbox")[0]) for at, text in story if not text.startswith("podero.wallbox")
    ]

    assert happened == [
        ("2026-11-22T21:10:00Z", "HOLD wallbox-disconnected"),
        ("2026-11-22T21:20:00Z", "HOLD BROKEN wallbox-disconnected"),
        ("2026-11-22T21:30:00Z", "HOLD wallbox-disconnected"),
        ("2026-11-22T22:00:00Z", "FIRING wallbox-disconnected [warning]"),
        ("2026-11-22T22:05:00Z", "DIGEST of 1 to ops (rule=wallbox-disconnected|status=firing)"),
        ("2026-11-23T10:00:00Z", "FIRING (reminder) wallbox-disconnected [warning]"),
        ("2026-11-23T10:05:00Z", "DIGEST of 1 to ops (rule=wallbox-disconnected|status=firing)"),
        ("2026-11-23T11:00:00Z", "RESOLVED wallbox-disconnected [warning]"),
        ("2026-11-23T11:05:00Z", "DIGEST of 1 to ops (rule=wallbox-disconnected|status=resolved)"),
    ]


def _config(tmp_path: Path, repo_root: Path) -> Path:
    """The example config, with its store in tmp_path (to prove a dry run never creates it)."""
    text = (repo_root / "config.example.toml").read_text()
    text = text.replace('url = "sqlite:///wattbridge.db"', f'url = "sqlite:///{tmp_path / "never.db"}"')
    shutil.copytree(repo_root / "rules", tmp_path / "rules")
    shutil.copytree(repo_root / "templates", tmp_path / "templates")
    (tmp_path / "config.toml").write_text(text)
    return tmp_path / "config.toml"


def test_a_dry_run_writes_no_store_and_renders_the_webhook_and_the_email(tmp_path, repo_root, capsys):
    config = _config(tmp_path, repo_root)
    examples = repo_root / "rules" / "examples"
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["rules", "test", "-c", str(config), "--rule", "wallbox-action-needed"]
    assert (
        main(
            [*argv, "--old", str(examples / "wallbox-old.json"), "--new", str(examples / "wallbox-new.json")]
        )
        == 0
    )
    out = capsys.readouterr().out

    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no file
    assert '"type": "wallbox.action_needed"' in out
    assert '"changes": [\n' in out
    assert "Subject: [wattbridge] Wallbox Charge Lite of ada@example.com needs action" in out
    assert "1 firing, 0 resolved, 0 digest(s); 2 notification(s) rendered, none sent." in out


def test_a_null_old_state_tests_an_appeared_rule(tmp_path, repo_root, capsys):
    config = _config(tmp_path, repo_root)
    (tmp_path / "rules" / "appeared.toml").write_text(
        '[[rule]]\nid = "session-appeared"\nsource = "realto.guided_onboarding_session"\n'
        'event = "appeared"\nchannels = ["partner"]\n'
    )
    (tmp_path / "old.json").write_text("null")
    (tmp_path / "new.json").write_text('{"id": "s-1", "companyName": "ACME", "expired": false}')
    argv = ["rules", "test", "-c", str(config), "--rules", str(tmp_path / "rules" / "appeared.toml")]
    assert main([*argv, "--old", str(tmp_path / "old.json"), "--new", str(tmp_path / "new.json")]) == 0
    out = capsys.readouterr().out

    assert "realto.guided_onboarding_session s-1: appeared" in out
    assert "FIRING session-appeared [info] realto.guided_onboarding_session s-1" in out


def test_a_channel_state_timeline_exercises_a_cooldown(tmp_path, repo_root, capsys):
    config = _config(tmp_path, repo_root)
    ok = '{"channel": "partner", "status": "ok", "consecutive_failures": 0, "last_error": null}'
    paused = '{"channel": "partner", "status": "paused", "consecutive_failures": 5, "last_error": "HTTP 500"}'
    lines = [
        (at, state)
        for at, state in [("21:00", ok), ("21:01", paused), ("21:02", ok), ("21:05", paused), ("21:20", ok)]
    ] + [("21:21", paused)]
    (tmp_path / "t.jsonl").write_text(
        "".join(
            f'{{"at": "2026-11-22T{at}:00Z", "source": "bridge.channel", "resource_id": "partner", '
            f'"state": {state}}}\n'
            for at, state in lines
        )
    )
    argv = ["rules", "test", "-c", str(config), "--timeline", str(tmp_path / "t.jsonl"), "--brief"]
    assert main([*argv, "--rule", "channel-unhealthy"]) == 0
    out = capsys.readouterr().out.splitlines()
    firings = [line[:20] for line in out if "FIRING channel-unhealthy" in line]
    cooled = [line for line in out if "COOLDOWN" in line]

    # cooldown = 15m: the 21:05 pause is inside the window of the 21:01 firing; 21:21 is past it.
    assert firings == ["2026-11-22T21:01:00Z", "2026-11-22T21:21:00Z"]
    assert cooled == [
        "2026-11-22T21:05:00Z  COOLDOWN channel-unhealthy bridge.channel partner: "
        "fired recently, nothing sent until 2026-11-22T21:16:00Z"
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"at": "2026-11-22T21:00:00Z", "source": "podero.wallbox"', ":1: not valid JSON"),
        ('{"at": "yesterday"}', ":1: `at`: not an ISO 8601 time: 'yesterday'"),
        ('{"at": "2026-11-22T21:00:00"}', ":1: `at`: '2026-11-22T21:00:00' has no timezone"),
        ('{"at": "2026-11-22T21:00:00Z"}\n{"at": "2026-11-22T20:00:00Z"}', ":2: `at` goes back in time"),
        (
            '{"at": "2026-11-22T21:00:00Z", "source": "podero.walbox", "resource_id": "x", "state": {}}',
            ":1: `source`: unknown source 'podero.walbox' (known: podero.wallbox, ",
        ),
        ('{"at": "2026-11-22T21:00:00Z", "state": {}}', ":1: a state line needs a `resource_id`"),
        ('{"at": "2026-11-22T21:00:00Z", "stat": {}}', ":1: unknown key(s) stat"),
        ("# only a comment\n", ": the timeline has no lines"),
    ],
)
def test_an_invalid_timeline_exits_1_naming_the_file_and_line(tmp_path, repo_root, capsys, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    argv = [
        "rules",
        "test",
        "-c",
        str(repo_root / "config.example.toml"),
        "--timeline",
        str(tmp_path / "bad.jsonl"),
    ]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.jsonl'}{message}" in err
    assert "1 problem in the input" in err


def test_an_unknown_rule_id_exits_1_with_the_id_it_probably_meant(repo_root, capsys):
    examples = repo_root / "rules" / "examples"
    argv = ["rules", "test", "-c", str(repo_root / "config.example.toml"), "--rule", "wallbox-disconected"]
    assert (
        main(
            [*argv, "--old", str(examples / "wallbox-old.json"), "--new", str(examples / "wallbox-new.json")]
        )
        == 1
    )
    assert "--rule: no rule has the id 'wallbox-disconected'; did you mean 'wallbox-disconnected'?" in (
        capsys.readouterr().err
    )


def test_old_without_new_and_a_state_that_is_not_an_object_are_refused(tmp_path, repo_root, capsys):
    config = str(repo_root / "config.example.toml")
    (tmp_path / "list.json").write_text("[1, 2]")
    assert main(["rules", "test", "-c", config, "--old", str(tmp_path / "list.json")]) == 1
    assert "--old needs --new" in capsys.readouterr().err
    assert (
        main(
            [
                "rules",
                "test",
                "-c",
                config,
                "--old",
                str(tmp_path / "list.json"),
                "--new",
                str(tmp_path / "list.json"),
            ]
        )
        == 1
    )
    assert f"{tmp_path / 'list.json'}: expected a JSON object" in capsys.readouterr().err
