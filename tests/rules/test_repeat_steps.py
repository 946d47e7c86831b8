"""Escalating reminders (`repeat = ["15m", "30m", "1h"]`, then every last interval) and
`repeat = "never"` (one notification per firing): the pure decisions, and the keys as `check` reads
them (FILE:LINE: key: message)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.model import Change, ResourceKey
from bridge.rules.state import Timing, on_due, on_observation
from tests.rules.test_rule_loading import GOOD, load, problems, write

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
KEY = ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1")
CHANGE = (Change(field="action_needed", old=False, new=True),)


def fire(t: Timing):
    d = on_observation(
        t, rule_id="r", key=KEY, prior=None, triggered=True, active=True, changes=CHANGE, now=T0
    )
    assert d.emit == "firing"
    assert d.state is not None
    return d.state


def test_escalating_intervals_wait_each_in_turn_then_every_last_one():
    t = Timing(repeat_s=900, repeat_steps=(900.0, 1800.0, 3600.0))
    state = fire(t)
    sent = []
    while len(sent) < 5:
        assert state.due_at is not None
        d = on_due(t, prior=state, active=True, now=state.due_at)
        assert d.emit == "firing"
        sent.append(round((state.due_at - T0).total_seconds() / 60))
        assert d.state is not None
        state = d.state

    assert sent == [15, 45, 105, 165, 225]  # +15m, +30m, +1h, then every hour


def test_escalating_intervals_still_stop_at_repeat_max():
    t = Timing(repeat_s=900, repeat_steps=(900.0, 1800.0), repeat_max=2)
    state = fire(t)
    d1 = on_due(t, prior=state, active=True, now=T0 + timedelta(minutes=15))
    assert d1.state is not None
    d2 = on_due(t, prior=d1.state, active=True, now=T0 + timedelta(minutes=45))
    assert (d1.repeat, d2.repeat) == (1, 2)
    assert d2.state is not None
    assert d2.state.due_at is None


def test_never_latches_one_notification_per_firing_without_reminders():
    t = Timing(repeat_never=True)
    state = fire(t)
    assert state.phase == "firing"
    assert state.due_at is None
    again = on_observation(
        t, rule_id="r", key=KEY, prior=state, triggered=True, active=True, changes=CHANGE, now=T0
    )
    assert again.emit is None  # a re-trigger while it holds is the same firing


LEVEL = GOOD.replace("from = false\n", "")


def test_repeat_accepts_one_interval_a_list_or_never(tmp_path):
    write(
        tmp_path,
        "r.toml",
        LEVEL.replace("to = true", 'to = true\nrepeat = ["15m", "30m", "1h"]')
        + LEVEL.replace('"charging-started"', '"b"').replace("to = true", 'to = true\nrepeat = "never"')
        + LEVEL.replace('"charging-started"', '"c"').replace("to = true", 'to = true\nrepeat = "2h"'),
    )
    a, b, c = load(tmp_path).rules

    assert a.repeat_steps == (timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1))
    assert a.repeat == timedelta(minutes=15)
    assert (b.repeat_never, b.repeat, b.repeat_steps) == (True, None, ())
    assert c.repeat_steps == (timedelta(hours=2),)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('["15m", "soon"]', "invalid duration 'soon'"),
        ("[]", "a list of intervals"),
        ('["15m", "0s"]', "positive"),
        ('"sometimes"', "invalid duration"),
    ],
)
def test_a_bad_repeat_is_refused_with_its_line(tmp_path, value, words):
    path = write(tmp_path, "r.toml", LEVEL.replace("to = true", f"to = true\nrepeat = {value}"))

    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:6: rule[0].repeat: ")
    assert words in problem


def test_repeat_max_with_never_is_refused(tmp_path):
    write(tmp_path, "r.toml", LEVEL.replace("to = true", 'to = true\nrepeat = "never"\nrepeat_max = 2'))

    [problem] = problems(tmp_path)

    assert "`repeat_max` needs `repeat` intervals" in problem
