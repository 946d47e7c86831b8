"""The Store protocol: one contract every backend (SQLite now, PostgreSQL later) honours.

The promise that makes "nothing lost" true: `commit` writes each PollResult's snapshot, events and
deliveries in ONE transaction; `claim_due` never holds a lock across a network call (it leases a
delivery by pushing its `next_attempt_at` forward, so a crashed worker's claim simply expires).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from bridge.lifecycle import LoopFn
from bridge.model import (
    Attempt,
    Delivery,
    DeliveryStatus,
    Event,
    FlapState,
    PollResult,
    ResourceKey,
    RuleState,
    Silence,
    Snapshot,
    Trace,
    Watch,
)

# What retention deletes, in this order: an attempt before its delivery, a delivery before its event.
PruneKind = Literal["traces", "attempts", "deliveries", "events"]
PRUNE_ORDER: tuple[PruneKind, ...] = ("traces", "attempts", "deliveries", "events")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreCounts:
    """Rows of the tables retention bounds (bench/retention.py, the store's size over time)."""

    events: int
    deliveries: int
    attempts: int
    traces: int


StateKey = tuple[str, ResourceKey]  # (rule id, resource): what a rule or flap state is stored under
TOMBSTONE_AGE = timedelta(hours=1)  # how long a shared store remembers a deleted state (see below)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanges:
    """The rule and flap states written since a watermark (`Store.state_changes`), all from one
    consistent read. `full`: these are every stored state (a first read, or a watermark older than
    what the store still remembers of deletions): mirror exactly them. Otherwise: remember the
    states, forget the `*_gone` keys (deleted and not written again since); the two never overlap.
    A state may come again in a later answer (it is re-sent, not lost): applying one is idempotent."""

    watermark: int  # pass it to the next call
    full: bool
    rule_states: tuple[RuleState, ...] = ()
    flap_states: tuple[FlapState, ...] = ()
    rules_gone: tuple[StateKey, ...] = ()
    flaps_gone: tuple[StateKey, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class HeldGroup:
    """Deliveries held for one digest: since when, how many, and when this group's last digest went."""

    channel: str
    group_key: str
    first_at: datetime
    count: int
    last_digest_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxCounts:
    """How much work the outbox holds: what a scrape of /metrics shows."""

    pending: dict[str, int]  # by channel
    dead: dict[str, int]  # by channel
    oldest_pending_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventQuery:
    """Filters of an event listing; `after` is the (occurred_at, id) of the previous page's last row."""

    rule: str | None = None
    source: str | None = None
    provider: str | None = None
    resource_id: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryQuery:
    """Filters of a delivery listing; `after` is the (created_at, id) of the previous page's last row."""

    status: DeliveryStatus | None = None
    channel: str | None = None
    event_id: str | None = None
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptOutcome:
    """One attempt and its decision: the delivery moves to `status` (pending again at `next_attempt_at`)."""

    attempt: Attempt
    status: DeliveryStatus
    next_attempt_at: datetime | None
    # A dead letter's copy for the channel's `fallback` (#14), queued in the same transaction; kept
    # out when that channel already has this event (its delivery id is taken).
    fallback: Delivery | None = None
    # The claim this attempt was made under (`Delivery.claim_token`): the record lands only while
    # the row still carries it. None: not made under a claim (a tool recording by hand), unfenced.
    claim_token: int | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    """What `record_attempts` could not record: unknown deliveries, and those whose claim another
    worker has taken since (fenced out: the newer claimer's record stands)."""

    missing: frozenset[str] = frozenset()
    refused: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Fence:
    """A write made on the strength of lease `name`: it lands only while `holder` still holds it
    with `token` (another replica that took the lease over has a greater token)."""

    name: str
    holder: str
    token: int


class Store(Protocol):
    @property
    def shared(self) -> bool:
        """Whether other processes (replicas) may write this store while it is open: then callers
        must not trust what they cached between polls (PostgreSQL: yes; SQLite: one process)."""
        ...

    async def open(self) -> None:
        """Connect and create/upgrade the schema."""
        ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError when the store is not usable (readiness probe)."""
        ...

    async def get_snapshot(self, key: ResourceKey) -> Snapshot | None: ...

    async def get_snapshots(self, provider: str, source: str) -> dict[str, Snapshot]:
        """Every stored snapshot of one provider's source, by resource id (for complete listings)."""
        ...

    async def get_digests(self, provider: str, source: str) -> dict[str, str]:
        """resource id → stored digest of one provider's source: the poller's cheap "unchanged?" check."""
        ...

    async def get_snapshots_by_id(
        self, provider: str, source: str, resource_ids: Sequence[str]
    ) -> dict[str, Snapshot]:
        """The stored snapshots of these ids (absent ones left out), read together."""
        ...

    async def commit(self, results: Sequence[PollResult], *, fence: Fence | None = None) -> None:
        """Write every result atomically (all of them in one transaction). With `fence`, nothing is
        written unless the lease is still the fence's (else FencedOut)."""
        ...

    async def claim_due(self, now: datetime, *, limit: int, lease: timedelta) -> list[Delivery]:
        """Pending deliveries due at `now`, oldest first; each is leased until `now + lease`."""
        ...

    async def defer(
        self, due: Sequence[tuple[str, datetime]], *, tokens: Mapping[str, int] | None = None
    ) -> None:
        """Put claimed, unsent pending deliveries back, each due at its time; no attempt is counted
        (a channel's rate limit said "not yet"). Others (delivered, dead, gone) are left alone, and
        so is one whose claim token is no longer the one in `tokens` (claimed again since)."""
        ...

    async def next_due_at(self) -> datetime | None:
        """When the earliest pending delivery is due (None if the outbox is empty)."""
        ...

    async def outbox_depth(self) -> int:
        """How many deliveries are pending (due now or waiting for a retry)."""
        ...

    async def oldest_pending_at(self) -> datetime | None:
        """`created_at` of the oldest pending delivery (None if none): how far behind the outbox is."""
        ...

    async def outbox_counts(self) -> OutboxCounts:
        """Pending and dead deliveries per channel, and the oldest pending one (for metrics)."""
        ...

    async def record_attempt(
        self, attempt: Attempt, *, status: DeliveryStatus, next_attempt_at: datetime | None
    ) -> None:
        """Store one attempt and move the delivery to `status` (pending again at `next_attempt_at`)."""
        ...

    async def record_attempts(self, outcomes: Sequence[AttemptOutcome]) -> Recorded:
        """Store many attempts in ONE transaction (group commit); says which could not be recorded.

        An unknown delivery is skipped, not an error for the others: they were sent and must be
        recorded. So is an outcome whose `claim_token` the row no longer carries (fenced: the
        delivery was claimed again, by a worker whose record must not be overwritten).
        """
        ...

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(
        self, *, status: DeliveryStatus | None = None, channel: str | None = None, limit: int = 100
    ) -> list[Delivery]: ...

    async def list_attempts(self, delivery_id: str) -> list[Attempt]: ...

    async def get_event(self, event_id: str) -> Event | None: ...

    async def list_events(self, *, limit: int = 100) -> list[Event]: ...

    async def page_events(self, query: EventQuery, *, limit: int) -> list[Event]:
        """Events matching `query`, newest first, strictly after its keyset position (admin API)."""
        ...

    async def page_deliveries(self, query: DeliveryQuery, *, limit: int) -> list[Delivery]:
        """Deliveries matching `query`, newest first, strictly after its keyset position (admin API)."""
        ...

    async def last_fired(self) -> dict[str, datetime]:
        """When each rule last fired (its newest event), by rule id."""
        ...

    async def last_firings(self, rule_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of these rules last fired (its newest `firing` event), by rule id; a rule that
        never fired is left out. Costs one index seek per rule, however many events are stored."""
        ...

    async def resource_counts(self, provider: str) -> dict[str, int]:
        """How many resources of each source one provider has now (disappeared ones not counted)."""
        ...

    async def replay(self, delivery_ids: Sequence[str], now: datetime) -> int:
        """Make delivered or dead deliveries pending again (same id, same body); returns how many.

        `attempts` restarts at 0, so a replay gets the whole retry schedule; past attempts stay listed.
        """
        ...

    async def add_watch(self, watch: Watch) -> None:
        """Start (or re-open) watching a resource by id; polled from the next cycle on."""
        ...

    async def end_watch(self, key: ResourceKey, *, reason: str, at: datetime) -> bool:
        """Stop polling a resource (terminal state reached); returns False if it was not active."""
        ...

    async def delete_watch(self, key: ResourceKey) -> bool: ...

    async def list_watches(
        self, *, provider: str | None = None, source: str | None = None, active_only: bool = True
    ) -> list[Watch]: ...

    async def list_watches_page(
        self,
        provider: str,
        *,
        source: str | None = None,
        after: tuple[str, str] | None,
        limit: int,
        shard: tuple[int, int] | None = None,
    ) -> list[Watch]:
        """Up to `limit` active watches of a provider (of one source, if given) after (source,
        resource id), in that order; with `shard` (K, N), only those whose resource id falls in shard
        K of N (`bridge.poll.shards.shard_of`: md5, the same in SQL and in Python)."""
        ...

    async def list_rule_states(self) -> list[RuleState]:
        """Every stored rule state (holds, firings, cooldown memories): loaded once at start."""
        ...

    async def save_rule_states(self, states: Sequence[RuleState]) -> None:
        """Write rule states that no poll result carries (stale timers armed or moved, acks), in one
        transaction; forgettable ones are deleted."""
        ...

    async def record_ack(self, state: RuleState, trace: Trace) -> None:
        """Store an acknowledged or snoozed firing's state and the trace that says who did it, in one
        transaction (#14). Any later write of the same firing that does not itself acknowledge or
        snooze keeps them (a replica's stale state cannot undo an ack); a new firing clears them."""
        ...

    async def delete_rule_states(self, rule_ids: Sequence[str]) -> int:
        """Forget every state of these rules (removed by a reload), their flap states too; returns
        how many rule state rows."""
        ...

    async def list_flap_states(self) -> list[FlapState]:
        """Every stored flap detection state (#14), counting or flapping: loaded once at start."""
        ...

    async def save_flap_states(self, states: Sequence[FlapState]) -> None:
        """Write flap states that no poll result carries (a window passed), in one transaction;
        forgettable ones are deleted."""
        ...

    async def state_changes(self, since: int | None) -> StateChanges:
        """The rule and flap states written (and deleted) since watermark `since`, with the watermark
        for the next call; `since` None: every state (`full`). Safe against writes in flight: one
        that commits after this read is in the next answer, even if it began before. For a store
        other processes write (`shared`); a store that is not may always answer `full`."""
        ...

    async def prune_tombstones(self, older_than: timedelta) -> int:
        """Forget deletions of rule and flap states older than `older_than` (the store's own clock,
        which stamped them); returns how many. A reader whose watermark predates one it forgot gets
        a `full` answer. A store without tombstones returns 0."""
        ...

    async def add_silence(self, silence: Silence) -> None: ...

    async def get_silence(self, silence_id: str) -> Silence | None: ...

    async def list_silences(self, *, active_after: datetime | None = None) -> list[Silence]:
        """Silences, oldest first; with `active_after`, only those ending after that time."""
        ...

    async def expire_silence(self, silence_id: str, now: datetime) -> bool:
        """End a silence now; False when it does not exist or has already ended."""
        ...

    async def held_groups(self) -> list[HeldGroup]:
        """Held deliveries per (channel, group key), for the digest loop."""
        ...

    async def list_held(self, channel: str, group_key: str) -> list[Delivery]: ...

    async def commit_digest(
        self, event: Event, digest: Delivery, members: Sequence[str], *, fence: Fence | None = None
    ) -> None:
        """Queue one digest delivery and mark its members `digested`, atomically (fenced: see commit)."""
        ...

    # -- "why (not)?" and retention (#14) ----------------------------------------------------------

    async def list_traces(
        self,
        rule_id: str,
        resource_id: str,
        *,
        provider: str | None = None,
        source: str | None = None,
        limit: int = 10,
    ) -> list[Trace]:
        """The newest evaluations of a rule on a resource (by id; provider/source narrow it)."""
        ...

    async def deliveries_of_events(self, event_ids: Sequence[str]) -> list[Delivery]:
        """Every delivery of these events, oldest first."""
        ...

    async def prune(self, kind: PruneKind, *, before: datetime, limit: int) -> int:
        """Delete at most `limit` rows of `kind` older than `before` in one short transaction;
        returns how many. Deliveries still pending or held, and events that still have deliveries,
        are kept; attempts go with their (finished, old) delivery."""
        ...

    async def counts(self) -> StoreCounts:
        """How many events, deliveries, attempts and traces are stored."""
        ...

    async def settle_held(
        self,
        *,
        release: Sequence[str],
        drop: Sequence[tuple[str, str]],
        now: datetime,
        fence: Fence | None = None,
    ) -> None:
        """End deferred (`held`) deliveries in one transaction: `release` become pending, due now;
        `drop` (id, why) become `suppressed` with the reason (still replayable). Others are left."""
        ...

    async def acquire_lease(self, name: str, holder: str, now: datetime, period: timedelta) -> int | None:
        """Take or renew lease `name` for `holder` until `now + period`; its fencing token (which
        grows whenever the holder changes), or None while another holder's lease is unexpired."""
        ...

    async def renew_leases(self, holder: str, now: datetime, period: timedelta) -> int:
        """Extend every unexpired lease of `holder` to `now + period` (heartbeat); how many."""
        ...

    async def release_leases(self, holder: str, names: Sequence[str]) -> None:
        """Give these leases up now (a clean stop), so another holder need not wait for expiry."""
        ...

    async def held_leases(self, holder: str, now: datetime) -> list[str]:
        """The names of `holder`'s unexpired leases."""
        ...

    async def lease_holders(self, prefix: str, now: datetime) -> list[tuple[str, str, datetime]]:
        """(name, holder, expiry) of every unexpired lease whose name starts with `prefix`, by name."""

    def outbox_listener(self, wake: Callable[[], None]) -> LoopFn | None:
        """A loop (a `Service` body) that calls `wake` whenever ANOTHER process commits deliveries
        that are due, so an idle worker sends them at once; None when this store has no such signal
        (SQLite, one process: the worker is told in memory)."""
        ...
