"""Provider health: ok / degraded / down, logged once when it goes down and once when it recovers.

Each provider's back-off (bridge/poll/backoff.py) lives here too, so what the status page, the API,
the metrics and `bridge.provider` show of it is read from one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import structlog

from bridge.poll.backoff import Deferral, ProviderBackoff

log = structlog.get_logger(__name__)

HealthStatus = Literal["ok", "degraded", "down"]
# After this many failed polls in a row a provider is `down` (before that: `degraded`).
DOWN_AFTER = 3


@dataclass(slots=True, kw_only=True)
class ProviderHealth:
    provider: str
    status: HealthStatus = "ok"
    consecutive_failures: int = 0
    last_error: str | None = None
    last_success_at: datetime | None = None
    last_poll_at: datetime | None = None
    # Set by the app from the provider's config (or by the poller from the group's interval).
    backoff: ProviderBackoff | None = field(default=None, repr=False)

    def deferral(self, now: datetime) -> Deferral | None:
        """The credential's deferral running at `now`, if any."""
        return self.backoff.deferred(now) if self.backoff is not None else None

    def backing_off(self, now: datetime) -> dict[str, Deferral]:
        """The resources backing off at `now`, soonest back first."""
        found = self.backoff.backing_off(now) if self.backoff is not None else {}
        return dict(sorted(found.items(), key=lambda item: item[1].until))

    def as_state(self, now: datetime | None = None) -> dict[str, object]:
        deferred = self.backoff.deferred(now) if self.backoff is not None and now is not None else None
        backing_off = self.backoff.backing_off(now) if self.backoff is not None and now is not None else {}
        return {
            "provider": self.provider,
            "status": self.status,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
            # A 429 (or a 503 that failed the whole poll) defers every request until then.
            "deferred_until": deferred.until.isoformat() if deferred is not None else None,
            "deferred_cause": deferred.cause if deferred is not None else None,
            "resources_backing_off": len(backing_off),
            # A Retry-After asked for longer than retry_after_cap: true once, while that lasts.
            "retry_after_capped": bool(
                self.backoff is not None and now is not None and self.backoff.capped(now)
            ),
        }


class HealthBoard:
    """Health of every provider instance, updated by the poller after each poll."""

    def __init__(self) -> None:
        self.providers: dict[str, ProviderHealth] = {}

    def get(self, provider: str) -> ProviderHealth:
        return self.providers.setdefault(provider, ProviderHealth(provider=provider))

    def configure(self, provider: str, *, interval: timedelta, cap: timedelta) -> ProviderBackoff:
        """Give a provider its back-off schedule (its poll interval and retry_after_cap)."""
        h = self.get(provider)
        h.backoff = ProviderBackoff(provider, interval=interval, cap=cap)
        return h.backoff

    def success(self, provider: str, at: datetime) -> None:
        h = self.get(provider)
        if h.status == "down":
            log.info("provider.recovered", provider=provider, failures=h.consecutive_failures)
        h.status, h.consecutive_failures, h.last_success_at, h.last_poll_at = "ok", 0, at, at
        if h.backoff is not None and h.backoff.backing_off(at):
            # Every resource asked was read, but some were not asked: still degraded until they are.
            h.status = "degraded"

    def failure(self, provider: str, error: str, at: datetime, *, partial: bool = False) -> None:
        """A failed poll (or, with `partial`, some resources failed while others were read)."""
        h = self.get(provider)
        h.consecutive_failures += 1
        h.last_error, h.last_poll_at = error, at
        previous = h.status
        h.status = "down" if h.consecutive_failures >= DOWN_AFTER and not partial else "degraded"
        if h.status == "down" and previous != "down":
            log.warning("provider.down", provider=provider, failures=h.consecutive_failures, error=error)
