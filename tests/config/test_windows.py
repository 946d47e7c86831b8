"""Time windows (#14): weekly `mute` / `active` windows in their own time zone; when a muted
notification may go out (the first instant nothing mutes it), across midnight and DST."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from bridge.config.windows import Schedule, TimeWindow, muted_until

BERLIN_NIGHT = {"from": "22:00", "to": "07:00", "timezone": "Europe/Berlin"}


def schedule(mute=(), active=()) -> Schedule:
    s = Schedule.of(
        [TimeWindow.model_validate(w) for w in mute], [TimeWindow.model_validate(w) for w in active]
    )
    assert s is not None
    return s


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_night_window_mutes_until_its_local_morning():
    quiet = schedule(mute=[BERLIN_NIGHT])
    # 2026-11-22 is a Sunday; Berlin is UTC+1 in November.
    assert muted_until([quiet], utc(2026, 11, 22, 20, 59)) is None
    assert muted_until([quiet], utc(2026, 11, 22, 21, 0)) == utc(2026, 11, 23, 6, 0)
    assert muted_until([quiet], utc(2026, 11, 23, 3, 0)) == utc(2026, 11, 23, 6, 0)
    assert muted_until([quiet], utc(2026, 11, 23, 6, 0)) is None


def test_summer_time_moves_the_instant_not_the_local_hour():
    quiet = schedule(mute=[BERLIN_NIGHT])
    assert muted_until([quiet], utc(2026, 7, 1, 23, 0)) == utc(2026, 7, 2, 5, 0)  # UTC+2 in July


def test_active_windows_mute_everything_outside_them():
    office = schedule(active=[{"days": ["mon-fri"], "from": "08:00", "to": "18:00", "timezone": "UTC"}])
    assert muted_until([office], utc(2026, 11, 23, 9, 0)) is None  # Monday 09:00
    assert muted_until([office], utc(2026, 11, 23, 18, 0)) == utc(2026, 11, 24, 8, 0)
    assert muted_until([office], utc(2026, 11, 21, 12, 0)) == utc(2026, 11, 23, 8, 0)  # Saturday → Monday


def test_a_window_over_midnight_belongs_to_the_day_it_starts():
    friday_night = schedule(mute=[{"days": ["fri"], "from": "22:00", "to": "06:00"}])
    assert muted_until([friday_night], utc(2026, 11, 28, 5, 0)) == utc(2026, 11, 28, 6, 0)  # Sat 05:00
    assert muted_until([friday_night], utc(2026, 11, 29, 5, 0)) is None  # Sun 05:00: Saturday is not listed


def test_rule_and_channel_windows_combine_to_the_first_instant_neither_mutes():
    night = schedule(mute=[{"from": "22:00", "to": "06:00"}])
    morning = schedule(mute=[{"from": "05:00", "to": "09:00"}])
    assert muted_until([night, morning], utc(2026, 11, 23, 23, 0)) == utc(2026, 11, 24, 9, 0)


def test_all_day_runs_to_24_00():
    sunday = schedule(mute=[{"days": ["sun"], "from": "00:00", "to": "24:00"}])
    assert muted_until([sunday], utc(2026, 11, 22, 23, 59)) == utc(2026, 11, 23, 0, 0)


@pytest.mark.parametrize(
    ("window", "message"),
    [
        pytest.param(
            {"from": "22:00", "to": "07:00", "timezone": "Europe/Berln"},
            "did you mean 'Europe/Berlin'",
            id="zone",
        ),
        pytest.param({"from": "25:00", "to": "07:00"}, "HH:MM", id="hour"),
        pytest.param({"from": "07:00", "to": "07:00"}, "empty window", id="empty"),
        pytest.param({"days": ["mon-fry"], "from": "07:00", "to": "08:00"}, "range like 'mon-fri'", id="day"),
        pytest.param({"from": "07:00", "to": "08:00", "tz": "UTC"}, "Extra inputs", id="unknown-key"),
    ],
)
def test_a_bad_window_says_what_to_write(window, message):
    with pytest.raises(ValidationError, match=message):
        TimeWindow.model_validate(window)
