"""`wattbridge check` renders every webhook `body_template` against a sample event of each source its
rules watch, and fails with FILE:LINE: key: message on invalid JSON or an unknown field."""

from __future__ import annotations

import textwrap

import pytest

from bridge.cli.main import main

RULES = """
[[rule]]
id = "charging"
source = "podero.wallbox"
field = "is_charging"
to = true
channels = ["slack"]

[[rule]]
id = "onboarded"
source = "wattshift.onboarding"
field = "status"
to = "COMPLETED"
channels = ["slack"]
"""


def write(tmp_path, template: str, *, content_type: str = "application/json", rules: str = RULES) -> str:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.toml").write_text(rules)
    config = textwrap.dedent(
        f"""\
        [store]
        url = "sqlite:///{tmp_path / "b.db"}"

        [rules]
        paths = ["rules/*.toml"]

        [outbound]
        allow = ["127.0.0.0/8"]

        [channels.slack]
        kind = "webhook"
        url = "http://127.0.0.1:9/hooks/slack"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        content_type = "{content_type}"
        body_template = '''{template}'''
        """
    )
    path = tmp_path / "config.toml"
    path.write_text(config)
    return str(path)


def check(path: str, capsys) -> tuple[int, str]:
    code = main(["check", "-c", path])
    out = capsys.readouterr()
    return code, out.err + out.out


def test_a_template_that_renders_json_with_known_fields_passes(tmp_path, capsys):
    template = (
        '{"text": {{ (data.severity ~ " " ~ type ~ " " ~ data.source ~ " " ~ data.state.get("status", "")) '
        '| tojson }}, "n": {{ data.changes | length }}}'
    )
    code, out = check(write(tmp_path, template), capsys)
    assert code == 0, out
    assert "OK" in out


def test_invalid_json_is_reported_at_the_templates_line_for_the_source_it_broke_on(tmp_path, capsys):
    path = write(tmp_path, '{"text": "{{ data.resource_id }}" "oops"}')
    code, out = check(path, capsys)
    assert code == 1
    assert f"{path}:15: channels.slack.body_template: renders invalid JSON for a podero.wallbox event" in out
    assert "quote values with `| tojson`" in out


def test_a_string_interpolated_without_tojson_is_invalid_json(tmp_path, capsys):
    # The sample owner's e-mail renders bare: ada@example.com is not a JSON value.
    code, out = check(
        write(tmp_path, '{"who": {{ new.owner.email }}}', rules=RULES.split("\n\n[[rule]]")[0]), capsys
    )
    assert code == 1
    assert "renders invalid JSON for a podero.wallbox event" in out


def test_unknown_names_data_keys_and_state_fields_are_named(tmp_path, capsys):
    template = (
        '{"a": {{ data.resourceid | tojson }}, "b": {{ new.owner.emial | tojson }}, '
        '"c": {{ payload | tojson }}, "d": {{ data.state.stauts | tojson }}}'
    )
    path = write(tmp_path, template)
    code, out = check(path, capsys)
    assert code == 1
    where = f"{path}:15: channels.slack.body_template:"
    assert f"{where} unknown name 'payload': a body template sees type, timestamp, data, old, new" in out
    assert f"{where} 'data.resourceid': unknown field of the envelope's data" in out
    assert f"{where} 'emial': unknown field of owner in podero.wallbox; did you mean 'owner.email'?" in out
    # `stauts` is a typo on both sources; each says so with its own hint.
    assert "'stauts': unknown field of wattshift.onboarding; did you mean 'status'?" in out
    assert "'stauts': unknown field of podero.wallbox" in out


def test_a_template_that_fails_to_render_is_reported(tmp_path, capsys):
    code, out = check(write(tmp_path, '{"x": {{ data.sequence / 0 }}}'), capsys)
    assert code == 1
    assert "fails to render for a podero.wallbox event: ZeroDivisionError" in out


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_non_json_content_type_is_not_held_to_json(tmp_path, capsys, content_type):
    code, out = check(write(tmp_path, "payload={{ type }}", content_type=content_type), capsys)
    assert code == 0, out


def test_a_channel_no_rule_sends_to_is_rendered_with_the_channel_test_event(tmp_path, capsys):
    path = write(tmp_path, '{"text": {{ new.message }}}', rules="")
    code, out = check(path, capsys)
    assert code == 1
    assert "renders invalid JSON for a bridge.channel event" in out
