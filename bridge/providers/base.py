"""The Provider protocol: what the poller needs from every partner API client.

A provider exposes named watch groups (one scheduler job each). Fetching a group returns what was
observed and, separately, what failed: a failure is never turned into an observation, so a fault can
never read as a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from bridge.errors import ProviderError
from bridge.model import Observation, Watch


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchGroup:
    """A set of resources polled together on one timetable."""

    provider: str
    name: str  # e.g. "wallboxes"
    interval: timedelta
    # Each watched resource is read by its own request (no listing): the poller may then fetch the
    # group's watches in slices and commit each slice as it arrives, so a 250,000-resource group is
    # never held in memory at once.
    by_id: bool = False
    source: str | None = None  # the one source a by-id group reads (its watches are paged by it)


@dataclass(slots=True, kw_only=True)
class FetchResult:
    """One poll of a watch group.

    `observations`: every resource read successfully (state None = 404, gone).
    `failures`: resource id (or endpoint) → the error; those resources keep their last snapshot.
    `complete_sources`: sources whose listing was read completely, so a stored resource missing from
    `observations` really disappeared.
    """

    observations: list[Observation] = field(default_factory=list)
    failures: dict[str, ProviderError] = field(default_factory=dict)
    complete_sources: frozenset[str] = frozenset()
    # Resources deliberately not read this time (backing off): like failures, they keep their last
    # snapshot, and a complete listing does not count them as gone.
    skipped: frozenset[str] = frozenset()
    # Sources listed over a window (Realto commands by trigger time): a resource new to the listing
    # after its first one has appeared, but one it no longer shows has only slid out of the window.
    window_sources: frozenset[str] = frozenset()
    terminal: dict[str, str] = field(default_factory=dict)  # resource id → why its watch ends
    # resource id → a watch its result starts (a finished onboarding session's device), committed
    # with that result; an existing watch of the same resource is left as it is.
    start_watches: dict[str, Watch] = field(default_factory=dict)
    rejected: int = 0  # observations that failed their deferred schema check (now in `failures`)
    # Set by a fetch worker (bridge/poll/fetch_pool.py), which sends back only what changed: how many it
    # read unchanged, and the digest of each observation it kept.
    unchanged: int = 0
    digests: dict[str, str] = field(default_factory=dict)

    def passes(self, obs: Observation) -> bool:
        """Run `obs`'s deferred schema check. A failure is recorded like a failed read (it keeps its
        last snapshot, never reads as a change); `obs` stays in `observations` but is not counted."""
        if obs.check is None:
            return True
        try:
            obs.check()
        except ProviderError as exc:
            self.failures[obs.key.resource_id] = exc
            self.rejected += 1
            return False
        return True

    def checked(self) -> FetchResult:
        """Every deferred check run now, failures moved out of `observations` (for callers other than
        the poller, which checks only what changed)."""
        self.observations = [o for o in self.observations if self.passes(o)]
        self.rejected = 0
        return self

    @property
    def observed(self) -> int:
        return len(self.observations) - self.rejected + self.unchanged


class Provider(Protocol):
    name: str
    kind: str

    def watch_groups(self) -> list[WatchGroup]: ...

    def static_watches(self) -> list[tuple[str, str, dict[str, Any]]]:
        """Watches from the config as (source, resource id, params); stored at start-up."""
        ...

    async def fetch(
        self, group: str, watches: Sequence[Watch] = (), *, skip: AbstractSet[str] = frozenset()
    ) -> FetchResult:
        """Poll one group; `watches` are the active stored watches of this provider. Resources in
        `skip` are backing off: not requested (a listing that shows them anyway may keep them)."""
        ...

    async def close(self) -> None: ...


def collect_outcomes(
    result: FetchResult, ids: Sequence[str], outcomes: Sequence[Observation | BaseException]
) -> None:
    """Sort gathered per-resource outcomes into observations and failures."""
    for resource_id, outcome in zip(ids, outcomes, strict=True):
        if isinstance(outcome, ProviderError):
            result.failures[resource_id] = outcome  # its own Retry-After is its own back-off
        elif isinstance(outcome, BaseException):
            raise outcome
        else:
            result.observations.append(outcome)
