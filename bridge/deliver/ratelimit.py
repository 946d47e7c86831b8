"""Per-channel send rate limits (issue #15): GCRA on the injected clock, so tests need no sleeping.

A channel with `rate_limit = "30/m"` sends at most that, in bursts of `rate_limit_burst`. A delivery
over the limit is not sent and costs no attempt: the worker puts it back in the outbox, due when its
turn comes. Turns are handed out in order (`defer_until`), so a backlog of N waits about N/rate in
total, and each comes back once, not on every tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bridge.config.models import ChannelConfig


@dataclass(slots=True)
class RateLimit:
    """The Generic Cell Rate Algorithm: one send per `interval`, `burst` at once when idle."""

    per_second: float
    burst: int = 1
    _tat: datetime | None = field(default=None, init=False)  # theoretical arrival time
    _deferred_to: datetime | None = field(default=None, init=False)  # the last turn handed out

    @property
    def interval(self) -> timedelta:
        return timedelta(seconds=1.0 / self.per_second)

    def try_take(self, now: datetime) -> bool:
        """Take a send now if the rate allows it."""
        tat = max(self._tat or now, now)
        if now < tat - self.interval * (self.burst - 1):
            return False
        self._tat = tat + self.interval
        return True

    def defer_until(self, now: datetime) -> datetime:
        """When a delivery refused now should be tried again: the next turn not yet handed out."""
        tat = max(self._tat or now, now)
        free_at = tat - self.interval * (self.burst - 1)
        turn = max(free_at, self._deferred_to + self.interval if self._deferred_to is not None else free_at)
        if turn <= now:  # the handed-out turns are all past: start again from the rate
            turn = free_at
        self._deferred_to = turn
        return turn


def rate_limits(channels: Mapping[str, ChannelConfig]) -> dict[str, RateLimit]:
    """One limiter per channel that sets `rate_limit`."""
    return {
        name: RateLimit(per_second=c.rate_limit, burst=c.rate_limit_burst)
        for name, c in channels.items()
        if c.rate_limit is not None
    }
