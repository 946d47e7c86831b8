"""`[rule.email] html`: an optional HTML alternative, compiled at load like every template, rendered
with autoescaping because it interpolates what providers send."""

from __future__ import annotations

import textwrap

import pytest

from bridge.errors import RuleError
from bridge.rules.engine import default_context
from bridge.rules.loader import load_rules

RULE = """
[[rule]]
id = "wallbox-action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
channels = ["ops"]

[rule.email]
subject = "Needs action"
html = {html!r}
"""


def load(tmp_path, html):
    (tmp_path / "r.toml").write_text(textwrap.dedent(RULE.format(html=html)).replace("'", '"'))
    return load_rules(["r.toml"], base_dir=tmp_path, channels=["ops"])


def test_the_html_body_escapes_provider_data(tmp_path):
    rules = load(tmp_path, "<p>{{ new.owner.email }}</p>")
    rule = rules.by_id["wallbox-action-needed"]
    context = default_context(None, {"owner": {"email": "<script>x</script>@example.com"}}, [])

    html = rules.render_email_html(rule, context=context)

    assert html == "<p>&lt;script&gt;x&lt;/script&gt;@example.com</p>"


def test_a_rule_without_html_renders_none(tmp_path):
    (tmp_path / "r.toml").write_text(
        '[[rule]]\nid = "a"\nsource = "podero.wallbox"\nfield = "is_charging"\nchannels = ["ops"]\n'
    )
    rules = load_rules(["r.toml"], base_dir=tmp_path, channels=["ops"])

    assert rules.render_email_html(rules.by_id["a"], context=default_context(None, {}, [])) is None


def test_an_html_template_that_does_not_compile_names_file_line_and_key(tmp_path):
    with pytest.raises(RuleError) as failed:
        load(tmp_path, "<p>{{ new.owner.email </p>")

    [problem] = failed.value.problems
    assert problem.file.endswith("r.toml")
    assert problem.line == 11
    assert problem.key == "rule[0].email.html"
    assert "does not compile" in problem.message
