"""What one poll saw: the summary the scheduler acts on, and the tally its slices add up to it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from bridge.providers.base import FetchResult


@dataclass(frozen=True, slots=True, kw_only=True)
class PollSummary:
    provider: str
    group: str
    ok: bool
    observed: int = 0
    failed: int = 0
    changed: int = 0
    events: int = 0
    skipped: int = 0  # resources backing off, not asked this time
    deferred_until: datetime | None = None  # the provider's requests wait until then (a 429)


@dataclass(slots=True)
class Tally:
    """What the slices of one poll saw, summed up for the summary and the provider's health."""

    observed: int = 0
    failures: int = 0
    first_failure: str | None = None
    changed: int = 0
    events: int = 0
    skipped: int = 0

    errors: dict[str, str] = field(default_factory=dict)  # the first few, for the poll's log line

    def fetched(self, result: FetchResult) -> None:
        self.observed += result.observed
        self.failures += len(result.failures)
        if result.failures and self.first_failure is None:
            self.first_failure = str(next(iter(result.failures.values())))
        for resource, failure in result.failures.items():
            if len(self.errors) >= 5:
                break
            self.errors[resource] = str(failure)
