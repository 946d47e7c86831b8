"""Pacing above 200 requests/s (bridge/providers/pacing.py): requests leave together on a grid, and
never more than the rate in any one-second window, whenever they are made. Times are given, not
waited for: the grant is a pure function of the request times."""

from __future__ import annotations

import bisect
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.providers.pacing import GridBudget

# Request times from an arbitrary loop-clock origin: bursts and gaps, up to 1,500 of them (so that
# rates up to 1,200/s could be exceeded).
_gaps = st.lists(st.one_of(st.just(0.0), st.floats(0, 0.002), st.floats(0, 1.5)), min_size=1, max_size=1500)


def most_in_any_second(times: list[float]) -> int:
    """The largest number of times in any half-open one-second window [t, t + 1)."""
    return max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times))


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=201, max_value=1200), _gaps, st.floats(0, 1e6))
def test_never_more_than_the_rate_in_any_second_and_never_before_the_request(rate, gaps, origin):
    budget = GridBudget(rate)
    asked = list(itertools.accumulate(gaps, initial=origin))
    granted = [budget.grant(t) for t in asked]

    assert all(g >= a for g, a in zip(granted, asked, strict=True))
    assert granted == sorted(granted)  # in the order they were made
    assert most_in_any_second(granted) <= rate


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=201, max_value=20_000), st.floats(0, 1e6))
def test_a_backlog_leaves_at_97_percent_of_the_rate_or_more(rate, origin):
    budget = GridBudget(rate)
    n = int(rate * 3)
    granted = [budget.grant(origin) for _ in range(n)]  # all made at once: a full page waiting

    duration = granted[-1] - granted[0]
    assert n / (duration + budget.window) >= 0.97 * rate
    assert most_in_any_second(granted) <= rate  # the first window's at once, then a full grid


def test_requests_granted_the_same_window_leave_at_the_same_instant():
    budget = GridBudget(1500)
    b = budget.per_window
    granted = [budget.grant(1000.004) for _ in range(2 * b + 2)]  # inside a window, not on its edge

    assert (budget.windows_per_second, b) == (99, 15)  # windows of about 10 ms, 1,485/s sustained
    assert granted[:b] == [1000.004] * b  # this window has room: at once
    assert len(set(granted[b : 2 * b])) == 1  # the next window's b leave together
    assert 1000.004 < granted[b] <= 1000.004 + budget.window
    assert granted[2 * b] - granted[b] == pytest.approx(budget.window)


def test_after_a_pause_a_request_leaves_at_once():
    budget = GridBudget(1500)
    for _ in range(20):
        budget.grant(1000.0)

    assert budget.grant(1005.003) == 1005.003
