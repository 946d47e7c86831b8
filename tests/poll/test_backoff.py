"""The back-off schedule itself (bridge/poll/backoff.py), on a ManualClock: pure, no network."""

from __future__ import annotations

import itertools
from datetime import timedelta

from bridge import errors
from bridge.clock import ManualClock
from bridge.poll.backoff import ProviderBackoff

INTERVAL = timedelta(seconds=2)
CAP = timedelta(minutes=5)


def make() -> ProviderBackoff:
    return ProviderBackoff("ws", interval=INTERVAL, cap=CAP)


def unavailable(status: int = 500, retry_after: float | None = None, asked: float | None = None):
    return errors.ProviderUnavailable(
        f"ws POST /status: HTTP {status}", status=status, retry_after=retry_after, retry_after_asked=asked
    )


def rate_limited(retry_after: float | None = None, asked: float | None = None):
    return errors.ProviderRateLimited(
        "ws POST /status: HTTP 429", status=429, retry_after=retry_after, retry_after_asked=asked
    )


def polls_asked(backoff: ProviderBackoff, clock: ManualClock, rid: str, polls: int, fail) -> list[int]:
    """Run `polls` polls every INTERVAL where `rid` fails whenever it is asked and `ok` always reads
    fine; returns the poll numbers at which `rid` was asked."""
    asked = []
    for n in range(polls):
        if rid not in backoff.skip(clock.now()):
            asked.append(n)
            backoff.fetched({"ok": None}, {rid: fail()}, clock.now())
        else:
            backoff.fetched({"ok": None}, {}, clock.now())
        clock.advance(INTERVAL)
    return asked


def test_a_failing_resource_backs_off_exponentially_while_the_others_are_read():
    clock = ManualClock()
    backoff = make()
    asked = polls_asked(backoff, clock, "bad", 40, unavailable)
    # Asked at the next poll after one failure, then after 2, 4, 8 … intervals.
    assert asked == [0, 1, 3, 7, 15, 31]
    assert backoff.credential is None
    assert "ok" not in backoff.resources


def test_the_back_off_stops_growing_at_the_cap():
    clock = ManualClock()
    backoff = make()
    asked = polls_asked(backoff, clock, "bad", 600, unavailable)
    gaps = [b - a for a, b in itertools.pairwise(asked)]
    assert max(gaps) * INTERVAL <= CAP
    assert gaps[-1] * INTERVAL >= CAP - INTERVAL  # at the cap: about one read every five minutes


def test_a_good_read_ends_the_back_off_at_once():
    clock = ManualClock()
    backoff = make()
    polls_asked(backoff, clock, "bad", 20, unavailable)
    assert backoff.resources["bad"].failures > 3
    clock.advance(CAP)
    assert "bad" not in backoff.skip(clock.now())
    backoff.fetched({"bad": None, "ok": None}, {}, clock.now())
    assert backoff.resources == {}
    assert backoff.skip(clock.now()) == frozenset()


def test_a_503_retry_after_is_honoured_for_that_resource_up_to_the_cap():
    clock = ManualClock()
    backoff = make()
    backoff.fetched({"ok": None}, {"bad": unavailable(503, retry_after=300.0, asked=99999.0)}, clock.now())
    d = backoff.resources["bad"]
    assert d.until == clock.now() + CAP
    assert d.capped
    assert "Retry-After 99999s capped to 300s" in d.cause
    assert backoff.capped(clock.now())
    clock.advance(CAP)
    assert not backoff.capped(clock.now())


def test_a_429_of_one_resource_while_others_read_fine_backs_off_only_that_resource():
    clock = ManualClock()
    backoff = make()
    backoff.fetched({"ok": None}, {"bad": rate_limited(300.0, asked=99999.0)}, clock.now())
    assert backoff.deferred(clock.now()) is None
    assert backoff.skip(clock.now()) == {"bad"}


def test_a_429_with_nothing_read_defers_the_credential_until_its_retry_after():
    clock = ManualClock()
    backoff = make()
    backoff.fetched({}, {"a": rate_limited(60.0), "b": rate_limited(60.0)}, clock.now())
    d = backoff.deferred(clock.now())
    assert d is not None
    assert d.until == clock.now() + timedelta(seconds=60)
    assert d.describe().startswith("deferred until 2026-11-22T21:01:00+00:00 (HTTP 429, Retry-After 60s)")
    assert backoff.resources == {}  # the resources themselves do not back off
    clock.advance(timedelta(seconds=60))
    assert backoff.deferred(clock.now()) is None


def test_a_429_without_retry_after_defers_the_credential_exponentially():
    clock = ManualClock()
    backoff = make()
    waits = []
    for _ in range(12):
        backoff.fetched({}, {"a": rate_limited()}, clock.now())
        d = backoff.deferred(clock.now())
        waits.append((d.until - clock.now()).total_seconds() if d is not None else 0.0)
        clock.advance(timedelta(seconds=max(waits[-1], 0.0)))
    assert waits[:4] == [1.0, 3.0, 7.0, 15.0]
    assert max(waits) <= CAP.total_seconds()


def test_a_provider_failing_whole_without_a_retry_after_is_asked_again_next_poll():
    # Nothing read and nothing said: the provider is down, not one resource; health counts it.
    clock = ManualClock()
    backoff = make()
    for _ in range(5):
        backoff.fetched({}, {"a": unavailable(500), "b": unavailable(502)}, clock.now())
        clock.advance(INTERVAL)
    assert backoff.skip(clock.now()) == frozenset()
    assert backoff.deferred(clock.now()) is None


def test_an_auth_failure_never_backs_a_resource_off():
    clock = ManualClock()
    backoff = make()
    backoff.fetched({"ok": None}, {"bad": errors.ProviderAuthError("refused", status=401)}, clock.now())
    assert backoff.skip(clock.now()) == frozenset()


def test_a_whole_poll_failure_defers_only_when_the_provider_said_when():
    clock = ManualClock()
    backoff = make()
    backoff.failed(unavailable(500), clock.now())
    assert backoff.deferred(clock.now()) is None
    backoff.failed(unavailable(503, retry_after=30.0), clock.now())
    assert backoff.deferred(clock.now()) is not None


def test_back_offs_of_resources_nobody_asks_for_any_more_are_forgotten():
    clock = ManualClock()
    backoff = make()
    backoff.fetched({"ok": None}, {"gone": unavailable()}, clock.now())
    clock.advance(CAP + 3 * INTERVAL)
    backoff.fetched({"ok": None}, {}, clock.now())
    assert backoff.resources == {}
