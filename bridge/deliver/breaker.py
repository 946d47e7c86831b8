"""Per-channel circuit breaker: a receiver that keeps failing is paused, then probed one at a time.

While a channel's circuit is open nothing is dropped and no attempt is spent: its deliveries stay
pending (their claim lease simply runs out and they are claimed again later). After `cooldown` one
delivery goes out as a probe; success closes the circuit, failure re-opens it with a doubled
cooldown (capped). Permanent rejections (a 4xx for one message) say nothing about the receiver's
health and do not count.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

CircuitState = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class Circuit:
    state: CircuitState = "closed"
    consecutive_failures: int = 0
    open_until: datetime | None = None
    cooldown: timedelta = timedelta(0)
    last_error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    threshold: int = 5  # consecutive failures that open the circuit
    cooldown: timedelta = timedelta(seconds=30)  # first pause; doubles on each failed probe
    max_cooldown: timedelta = timedelta(minutes=10)


class Breakers:
    """The circuits of every channel; pure state, driven by the delivery worker with the clock's `now`."""

    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self.circuits: dict[str, Circuit] = {}

    def get(self, channel: str) -> Circuit:
        return self.circuits.setdefault(channel, Circuit())

    def allow(self, channel: str, now: datetime) -> bool:
        """May a delivery to `channel` be sent now? Half-open admits exactly one probe."""
        c = self.get(channel)
        if c.state == "closed":
            return True
        if c.state == "open" and c.open_until is not None and now >= c.open_until:
            c.state = "half_open"
            return True
        return False

    def record(
        self, channel: str, *, ok: bool, counts: bool, now: datetime, error: str | None = None
    ) -> bool:
        """Record an attempt's outcome; returns True when the circuit changed state (worth telling ops)."""
        c = self.get(channel)
        before = c.state
        if ok:
            c.state, c.consecutive_failures, c.open_until, c.cooldown, c.last_error = (
                "closed",
                0,
                None,
                timedelta(0),
                None,
            )
            return before != "closed"
        if not counts:
            if c.state == "half_open":  # the probe proved the receiver answers: close
                c.state, c.consecutive_failures, c.open_until = "closed", 0, None
            return before != c.state
        c.consecutive_failures += 1
        c.last_error = error
        if c.state == "half_open" or c.consecutive_failures >= self.policy.threshold:
            c.cooldown = min(self.policy.max_cooldown, max(self.policy.cooldown, c.cooldown * 2))
            c.state, c.open_until = "open", now + c.cooldown
        return before != c.state
