"""Provider health: ok / degraded / down, logged once when it goes down and once when it recovers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import structlog

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

    def as_state(self) -> dict[str, object]:
        return {
            "provider": self.provider,
            "status": self.status,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_success_at": self.last_success_at.isoformat() if self.last_success_at else None,
        }


class HealthBoard:
    """Health of every provider instance, updated by the poller after each poll."""

    def __init__(self) -> None:
        self.providers: dict[str, ProviderHealth] = {}

    def get(self, provider: str) -> ProviderHealth:
        return self.providers.setdefault(provider, ProviderHealth(provider=provider))

    def success(self, provider: str, at: datetime) -> None:
        h = self.get(provider)
        if h.status == "down":
            log.info("provider.recovered", provider=provider, failures=h.consecutive_failures)
        h.status, h.consecutive_failures, h.last_success_at, h.last_poll_at = "ok", 0, at, at

    def failure(self, provider: str, error: str, at: datetime, *, partial: bool = False) -> None:
        """A failed poll (or, with `partial`, some resources failed while others were read)."""
        h = self.get(provider)
        h.consecutive_failures += 1
        h.last_error, h.last_poll_at = error, at
        previous = h.status
        h.status = "down" if h.consecutive_failures >= DOWN_AFTER and not partial else "degraded"
        if h.status == "down" and previous != "down":
            log.warning("provider.down", provider=provider, failures=h.consecutive_failures, error=error)
