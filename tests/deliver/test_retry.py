"""The retry policy: SPEC §6's schedule, bounded jitter, Retry-After honoured up to a cap, then dead."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from bridge.deliver.retry import DEFAULT_SCHEDULE, RetryPolicy

NOW = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
SPEC_WAITS = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
]


def test_the_default_schedule_is_the_spec_schedule_of_eight_attempts():
    assert RetryPolicy().max_attempts == 8
    assert tuple(DEFAULT_SCHEDULE) == (timedelta(0), *SPEC_WAITS)


@pytest.mark.parametrize("attempts_made", range(1, 8))
def test_without_jitter_each_retry_waits_exactly_the_scheduled_time(attempts_made):
    policy = RetryPolicy(jitter=0.0)

    decision = policy.decide(attempts_made=attempts_made, now=NOW, retry_after=None, permanent=False)

    assert not decision.dead
    assert decision.next_attempt_at == NOW + SPEC_WAITS[attempts_made - 1]


def test_the_eighth_failure_is_a_dead_letter():
    decision = RetryPolicy().decide(attempts_made=8, now=NOW, retry_after=None, permanent=False)

    assert decision.dead
    assert decision.next_attempt_at is None


def test_a_permanent_failure_is_dead_at_once():
    decision = RetryPolicy().decide(attempts_made=1, now=NOW, retry_after=30.0, permanent=True)

    assert decision.dead


def test_jitter_stays_within_its_fraction_and_actually_varies():
    policy = RetryPolicy(jitter=0.2, rng=random.Random(7))
    waits = [
        (policy.decide(attempts_made=2, now=NOW, retry_after=None, permanent=False).next_attempt_at - NOW)
        for _ in range(500)
    ]

    assert all(timedelta(minutes=4) <= w <= timedelta(minutes=6) for w in waits)
    assert len(set(waits)) > 100
    assert min(waits) < timedelta(minutes=4, seconds=10)
    assert max(waits) > timedelta(minutes=5, seconds=50)


def test_a_seeded_rng_makes_decisions_reproducible():
    a = RetryPolicy(rng=random.Random(1)).decide(attempts_made=3, now=NOW, retry_after=None, permanent=False)
    b = RetryPolicy(rng=random.Random(1)).decide(attempts_made=3, now=NOW, retry_after=None, permanent=False)

    assert a == b


def test_a_retry_after_longer_than_the_schedule_is_honoured():
    decision = RetryPolicy(jitter=0.0).decide(attempts_made=1, now=NOW, retry_after=120.0, permanent=False)

    assert decision.next_attempt_at == NOW + timedelta(seconds=120)


def test_a_retry_after_shorter_than_the_schedule_does_not_hurry_the_retry():
    decision = RetryPolicy(jitter=0.0).decide(attempts_made=2, now=NOW, retry_after=10.0, permanent=False)

    assert decision.next_attempt_at == NOW + timedelta(minutes=5)


def test_a_huge_retry_after_is_capped():
    policy = RetryPolicy(jitter=0.0, retry_after_cap=timedelta(hours=1))

    decision = policy.decide(attempts_made=1, now=NOW, retry_after=7 * 86400.0, permanent=False)

    assert decision.next_attempt_at == NOW + timedelta(hours=1)


def test_a_custom_schedule_sets_the_number_of_attempts():
    policy = RetryPolicy(schedule=(timedelta(0), timedelta(seconds=1)), jitter=0.0)

    assert not policy.decide(attempts_made=1, now=NOW, retry_after=None, permanent=False).dead
    assert policy.decide(attempts_made=2, now=NOW, retry_after=None, permanent=False).dead


@pytest.mark.parametrize(
    "kwargs", [{"schedule": ()}, {"jitter": 1.5}, {"jitter": -0.1}], ids=["empty", "big", "neg"]
)
def test_nonsense_policies_are_refused(kwargs):
    with pytest.raises(ValueError, match=r"schedule|jitter"):
        RetryPolicy(**kwargs)
