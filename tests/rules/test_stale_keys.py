"""`stale_after` as `check` reads it: on a device source, alone or with a timestamp `field`; every
misuse is refused at its FILE:LINE with the key; and the pure timer decisions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.model import ResourceKey
from bridge.rules import stale
from bridge.rules.state import Timing
from tests.rules.test_rule_loading import load, problems, write

BASE = """
[[rule]]
id = "quiet"
source = "podero.wallbox"
stale_after = "6h"
channels = ["ops"]
"""


def test_a_stale_rule_loads_with_or_without_a_timestamp_field(tmp_path):
    second = BASE.replace('"quiet"', '"q2"') + 'field = "current_state_last_updated_at"\n'
    write(tmp_path, "r.toml", BASE + second)
    reads, reported = load(tmp_path).rules

    assert (reads.stale_after, reads.field) == (timedelta(hours=6), None)
    assert reported.field == "current_state_last_updated_at"


@pytest.mark.parametrize(
    ("extra", "line", "key", "words"),
    [
        ('field = "is_charging"', 6, "rule[0].field", "needs a timestamp field"),
        ('field = "current_state_last_updated"', 6, "rule[0].field", "did you mean"),
        ("to = true", 1, "rule[0]", "it takes no to"),
        ('for = "5m"', 1, "rule[0]", "it takes no for"),
    ],
)
def test_misuse_of_stale_after_is_refused_at_its_line(tmp_path, extra, line, key, words):
    path = write(tmp_path, "r.toml", BASE + extra + "\n")
    [problem] = problems(tmp_path)

    assert problem.startswith(f"{path}:{line}: {key}")
    assert words in problem


def test_stale_after_on_a_session_source_or_not_positive_is_refused(tmp_path):
    path = write(tmp_path, "r.toml", BASE.replace("podero.wallbox", "realto.command"))
    [problem] = problems(tmp_path)
    assert problem.startswith(f"{path}:1: rule[0]: ")
    assert "watches devices" in problem

    path = write(tmp_path, "r.toml", BASE.replace('"6h"', '"0s"'))
    [problem] = problems(tmp_path)
    assert problem.startswith(f"{path}:4: rule[0].stale_after: ")
    assert "positive" in problem


T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
KEY = ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1")
T = Timing(stale_s=3600, resolve=True)
M = timedelta(minutes=1)


def test_a_timer_moves_on_while_reports_come_and_fires_once_they_stop():
    st = stale.arm(T, rule_id="r", key=KEY, fresh=T0, now=T0)
    assert st.due_at == T0 + timedelta(hours=1)
    moved = stale.check(T, prior=st, fresh=T0 + 40 * M, now=T0 + 60 * M)
    assert moved.emit is None
    assert moved.state.due_at == T0 + 100 * M
    fired = stale.check(T, prior=moved.state, fresh=T0 + 40 * M, now=T0 + 100 * M)
    assert fired.emit == "firing"
    assert fired.state.phase == "firing"
    again = stale.on_report(T, prior=fired.state, fresh=T0 + 40 * M, now=T0 + 180 * M)
    assert again.emit is None  # the same old timestamp is no report
    back = stale.on_report(T, prior=fired.state, fresh=T0 + 180 * M, now=T0 + 180 * M)
    assert back.emit == "resolved"
    assert back.state.phase == "pending"


def test_a_reported_time_without_a_zone_is_utc_and_garbage_is_unknown():
    assert stale.reported_at({"t": "2026-11-23T08:00:00"}, "t") == T0
    assert stale.reported_at({"t": "2026-11-23T08:00:00Z"}, "t") == T0
    assert stale.reported_at({"t": "soon"}, "t") is None
    assert stale.reported_at({"t": None}, "t") is None
