"""`escalate` as `check` reads it (#14): steps of `after` and `channels`, `after` increasing, known
channels, on a rule that knows when its firing ends; each misuse at its FILE:LINE with the key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.rules.test_rule_loading import load, problems, write

BASE = """
[[rule]]
id = "action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
channels = ["partner"]
"""
STEPS = 'escalate = [{after = "30m", channels = ["ops"]}, {after = "1h", channels = ["partner", "ops"]}]'


def test_an_escalation_chain_loads_in_order(tmp_path):
    write(tmp_path, "r.toml", BASE + "resolve = true\n" + STEPS + "\n")
    [rule] = load(tmp_path).rules
    assert [(e.after, e.channels) for e in rule.escalate] == [
        (timedelta(minutes=30), ("ops",)),
        (timedelta(hours=1), ("partner", "ops")),
    ]
    assert rule.acknowledgeable
    assert rule.timing.escalate_s == (1800.0, 3600.0)


@pytest.mark.parametrize(
    ("extra", "line", "key", "words"),
    [
        (
            "resolve = true\nescalate = [\n"
            '  {after = "1h", channels = ["ops"]},\n  {after = "1h", channels = ["ops"]},\n]',
            8,
            "rule[0].escalate",
            "must be longer than the one before",
        ),
        (
            'resolve = true\nescalate = [\n  {after = "30m", channels = ["opps"]},\n]',
            8,
            "rule[0].escalate[0].channels",
            "unknown channel 'opps'",
        ),
        (
            'resolve = true\nescalate = [{after = "0s", channels = ["ops"]}]',
            8,
            "rule[0].escalate[0].after",
            "positive",
        ),
        (
            'resolve = true\nescalate = [{after = "30m", channels = []}]',
            8,
            "rule[0].escalate[0].channels",
            "at least 1",
        ),
        (
            'resolve = true\nescalate = [{after = "30m", channel = ["ops"]}]',
            8,
            "rule[0].escalate[0].channel",
            "unknown key",
        ),
        ('escalate = [{after = "30m", channels = ["ops"]}]', 1, "rule[0]", "must know when it stops"),
    ],
)
def test_misuse_of_escalate_is_refused_at_its_line(tmp_path, extra, line, key, words):
    path = write(tmp_path, "r.toml", BASE + extra + "\n")
    found = problems(tmp_path)
    assert any(p.startswith(f"{path}:{line}: {key}") and words in p for p in found), found
