"""The outbox's retry policy: when a failed delivery is tried again, and when it becomes a dead letter.

Pure given `now` (and the injected random source): the decision is data that the worker stores in
the same write as the attempt, so a restart resumes the schedule instead of starting it over.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# SPEC §6: the first attempt is immediate, then 5s, 5m, 30m, 2h, 5h, 10h, 10h; then dead letter.
DEFAULT_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryDecision:
    """`dead`: give up (dead letter, replayable). Otherwise try again at `next_attempt_at`."""

    dead: bool
    next_attempt_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Exponential-ish backoff with jitter that honours `Retry-After` up to a cap.

    `schedule[i]` is the wait before attempt `i + 1`; `schedule[0]` (normally 0) is the first send,
    so `len(schedule)` is the number of attempts before a delivery is dead.
    """

    schedule: tuple[timedelta, ...] = DEFAULT_SCHEDULE
    jitter: float = 0.2
    retry_after_cap: timedelta = timedelta(hours=1)
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.schedule:
            raise ValueError("a retry schedule needs at least one attempt")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")

    @property
    def max_attempts(self) -> int:
        return len(self.schedule)

    def decide(
        self, *, attempts_made: int, now: datetime, retry_after: float | None, permanent: bool
    ) -> RetryDecision:
        """What to do after a failed attempt (`attempts_made` counts it).

        dead                when `permanent` or `attempts_made >= len(schedule)`
        otherwise
          base            = schedule[attempts_made]
          wait            = base * (1 + u),  u uniform in [-jitter, +jitter]   (spreads a burst of failures)
          wait            = max(wait, min(retry_after, retry_after_cap))      (when the receiver said when)
          next_attempt_at = now + wait

        A `Retry-After` shorter than the schedule never makes us retry sooner; a longer one is
        honoured up to the cap, so a hostile or buggy header cannot park a delivery for days.
        """
        if permanent or attempts_made >= len(self.schedule):
            return RetryDecision(dead=True, next_attempt_at=None)
        base = self.schedule[max(attempts_made, 0)].total_seconds()
        wait = base * (1.0 + self.rng.uniform(-self.jitter, self.jitter)) if self.jitter else base
        if retry_after is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.retry_after_cap.total_seconds()))
        return RetryDecision(dead=False, next_attempt_at=now + timedelta(seconds=wait))
