"""The dry run's stand-ins on its throwaway store: a real SQLite store that also records what was
committed (for the report), and a provider that answers polls with the timeline's current states."""

from __future__ import annotations

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.clock import ManualClock
from bridge.errors import ProviderUnavailable
from bridge.model import Delivery, Event, Observation, PollResult, ResourceKey
from bridge.providers.base import FetchResult, WatchGroup
from bridge.store.base import Fence
from bridge.store.sqlite import SqliteStore


class RecordingStore(SqliteStore):
    """A real SQLite store that also remembers what was committed, for the report."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, synchronous="NORMAL")  # throwaway: no fsync needed
        self.results: list[PollResult] = []
        self.digests: list[tuple[Event, Delivery, list[str]]] = []
        self.settled: list[tuple[list[str], list[str]]] = []  # (released, left out) when a window ended

    async def commit(self, results: Sequence[PollResult], *, fence: Fence | None = None) -> None:
        await super().commit(results, fence=fence)
        self.results.extend(results)

    async def commit_digest(
        self, event: Event, digest: Delivery, members: Sequence[str], *, fence: Fence | None = None
    ) -> None:
        await super().commit_digest(event, digest, members, fence=fence)
        self.digests.append((event, digest, list(members)))

    async def settle_held(
        self,
        *,
        release: Sequence[str],
        drop: Sequence[tuple[str, str]],
        now: datetime,
        fence: Fence | None = None,
    ) -> None:
        await super().settle_held(release=release, drop=drop, now=now, fence=fence)
        if release or drop:
            self.settled.append((list(release), [i for i, _ in drop]))


@dataclass(slots=True)
class ReplayProvider:
    """Answers polls with the timeline's current states: the provider as the recording saw it."""

    name: str
    kind: str
    clock: ManualClock
    states: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)
    listed: set[str] = field(default_factory=set)  # sources replayed as complete listings
    failure: str | None = None

    def watch_groups(self) -> list[WatchGroup]:
        return [WatchGroup(provider=self.name, name="replay", interval=timedelta(minutes=1))]

    def static_watches(self) -> list[tuple[str, str, dict[str, Any]]]:
        return []

    async def fetch(
        self, group: str, watches: Sequence[Any] = (), *, skip: AbstractSet[str] = frozenset()
    ) -> FetchResult:
        if self.failure is not None:
            raise ProviderUnavailable(self.failure)
        now = self.clock.now()
        observations = [
            Observation(
                key=ResourceKey(source=source, provider=self.name, resource_id=rid),
                state=state,
                observed_at=now,
            )
            for (source, rid), state in self.states.items()
            if state is not None or source not in self.listed
        ]
        return FetchResult(observations=observations, complete_sources=frozenset(self.listed))

    async def close(self) -> None:
        return None
