"""What the poller knows between polls: its collaborators, and its in-memory mirrors of stored state.

The mirrors are the rule and flap states (held by `evaluate.Evaluator`), the stored digests per
source and the last committed `bridge.provider` snapshots; the store stays the truth. `PollerMirrors`
is the base of `cycle.Poller` (the poll), `commits.PollCommits` (the commits that keep these mirrors
in step) and `ticks.PollTicks` (the rule timers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import structlog

from bridge.channels.base import Channel
from bridge.clock import Clock
from bridge.config.windows import Schedule
from bridge.deliver.handoff import Handoff
from bridge.metrics import Metrics
from bridge.model import HEALTH_SOURCE, FlapState, ResourceKey, RuleState, Snapshot
from bridge.notify.links import LinkSigner
from bridge.notify.rulebook import RuleBook
from bridge.poll.diff import digest64
from bridge.poll.evaluate import Evaluator
from bridge.poll.fetch_pool import FetchPool
from bridge.poll.health import HealthBoard
from bridge.rules.engine import RuleSet
from bridge.store.base import StateChanges, Store

log = structlog.get_logger("bridge.poll.cycle")

# A by-id group is fetched and committed in slices of this many watches: memory stays bounded at any
# fleet size, and a slice's results (which arrive together) are group-committed in one transaction.
SLICE = 500


class PollerMirrors:
    def __init__(
        self,
        *,
        store: Store,
        rulebook: RuleBook,
        channels: Mapping[str, Channel],
        clock: Clock,
        health: HealthBoard,
        on_committed: Callable[[], None] = lambda: None,
        handoff: Handoff | None = None,
        digest_groups: Mapping[str, tuple[str, ...]] | None = None,
        metrics: Metrics | None = None,
        fetch_pools: Mapping[str, FetchPool] | None = None,
        event_types: Mapping[str, Callable[[str], bool]] | None = None,
        windows: Mapping[str, Schedule] | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self._store = store
        self._pools = fetch_pools or {}  # provider → its fetch workers, when it has any
        self._metrics = metrics
        self._rulebook = rulebook
        self._clock = clock
        self.health = health
        self._on_committed = on_committed
        # The delivery worker of this process, when fresh deliveries go to it without a claim.
        self._handoff = handoff
        # The last committed bridge.provider snapshots (loaded lazily; the store has them too).
        self._health_snapshots: dict[str, Snapshot] = {}
        self._evaluate = Evaluator(
            channels,
            digest_groups=digest_groups or {},
            event_types=event_types,
            windows=windows,
            links=links,
        )
        # From reading snapshots to committing: a timer firing must not interleave with a poll of the
        # same resource (both bump its sequence). Fetching happens outside it.
        self._lock = asyncio.Lock()
        self._rules_seen: RuleSet | None = None  # the rule set whose removed rules were last pruned
        # (provider, source) → resource id → the stored digest in 64 bits (see `digest64`): unchanged
        # polls are decided here, without a store round trip. Loaded per source on first use, updated
        # after each commit; the store stays the truth (snapshot states are never kept in memory).
        self._digests: dict[tuple[str, str], dict[str, int]] = {}
        self._health_stale: set[str] = set()  # providers whose health row another writer moved
        # On a store shared by replicas, another replica may have written any row since this one
        # last looked: the mirrors are brought up to date at the start of each poll, tick and
        # acknowledgement, from what changed since `_states_mark` (None: read every state).
        self._shared = store.shared
        self._states_mark: int | None = None

    async def load_state(self) -> None:
        """Read stored rule states (running holds, firings, cooldowns) so a restart continues them."""
        self._apply(await self._store.state_changes(None))
        self._evaluate.started_at = self._clock.now()

    async def _refresh_states(self) -> None:
        """Shared store, under `_lock`: mirror the rule and flap states written since the last look.

        Why a changed row never undoes something newer here: every write of this process to the
        mirrors happens under the lock, after its commit returned; this read starts under the lock
        too, so its snapshot holds all of them, and each row it returns is at least as new as the
        mirror's state (the row may even be newer than what this process wrote: the store keeps
        another replica's acknowledgement of the same firing, see `Store.record_ack`)."""
        mark, self._states_mark = self._states_mark, None  # should this fail: a full read next time
        changes = await self._store.state_changes(mark)
        if changes.full and mark is not None:
            log.info("poll.states_reread", reason="deletions older than the watermark were forgotten")
        self._apply(changes)

    def _apply(self, changes: StateChanges) -> None:
        if changes.full:
            self._evaluate.replace_all(changes.rule_states)
            self._evaluate.flaps.replace_all(changes.flap_states)
        else:
            self._evaluate.forget(changes.rules_gone)
            self._evaluate.remember(changes.rule_states)
            self._evaluate.flaps.forget(changes.flaps_gone)
            self._evaluate.flaps.remember(changes.flap_states)
        self._states_mark = changes.watermark

    def _remember(self, states: Iterable[RuleState]) -> None:
        self._evaluate.remember(states)

    @property
    def rule_states(self) -> list[RuleState]:
        return self._evaluate.states

    def rule_state(self, rule_id: str, key: ResourceKey) -> RuleState | None:
        return self._evaluate.state_of(rule_id, key)

    @property
    def flap_states(self) -> list[FlapState]:
        """Flap detection states (#14): counting and flapping, as last committed."""
        return self._evaluate.flaps.states

    @property
    def flapping(self) -> list[FlapState]:
        """The flap states that are flapping now (#14): status page, API, metrics."""
        return self._evaluate.flaps.flapping()

    def next_due(self) -> datetime | None:
        """When the earliest hold ends, reminder is due or flapping settles (None: no timer running)."""
        due = [d for d in (self._evaluate.next_due(), self._evaluate.flaps.next_due()) if d is not None]
        return min(due, default=None)

    async def _refresh_silences(self, now: datetime) -> None:
        self._evaluate.set_silences(await self._store.list_silences(active_after=now))

    async def load_health(self) -> None:
        """Read stored `bridge.provider` snapshots, so a restart does not re-baseline them."""
        for provider in list(self.health.providers):
            snap = await self._store.get_snapshot(
                ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
            )
            if snap is not None:
                self._health_snapshots[provider] = snap

    async def _refresh_mirrors(self, provider: str) -> None:
        """Shared store: forget this provider's digests, catch up on rule and flap states, read
        health again."""
        for source in [k for k in self._digests if k[0] == provider]:
            del self._digests[source]
        async with self._lock:
            await self._refresh_states()
        self._health_stale.add(provider)

    async def _reload_health(self, provider: str) -> None:
        if provider in self._health_stale:
            self._health_stale.discard(provider)
            snap = await self._store.get_snapshot(
                ResourceKey(source=HEALTH_SOURCE, provider=provider, resource_id=provider)
            )
            if snap is not None:
                self._health_snapshots[provider] = snap

    async def _known_digests(self, provider: str, source: str) -> dict[str, int]:
        known = self._digests.get((provider, source))
        if known is None:
            stored = await self._store.get_digests(provider, source)
            known = {rid: digest64(d) for rid, d in stored.items()}
            self._digests[(provider, source)] = known
        return known
