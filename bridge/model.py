"""The pipeline's values: what one poll observes, what changed, what fired, what to deliver.

Frozen, slotted, keyword-only dataclasses: cheap to make, safe to share between stages.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

JSON = Any
EventKind = Literal["changed", "appeared", "disappeared"]
EventStatus = Literal["firing", "resolved"]
DeliveryStatus = Literal["pending", "delivered", "dead", "suppressed", "held", "digested"]
RulePhase = Literal["pending", "firing", "idle"]

# The bridge's own resources: rules alert on them like on any provider's (`bridge.provider` is a
# provider's health, `bridge.channel` a channel's delivery health).
HEALTH_SOURCE = "bridge.provider"
CHANNEL_SOURCE = "bridge.channel"
CHANNEL_PROVIDER = "bridge"  # the provider name under which channel resources are keyed
INTERNAL_SOURCES = (HEALTH_SOURCE, CHANNEL_SOURCE)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceKey:
    """Identifies one watched resource across polls."""

    source: str  # e.g. "podero.wallbox"
    provider: str  # provider instance name from the config, e.g. "podero"
    resource_id: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.source}/{self.resource_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Observation:
    """One resource as a successful poll saw it. `state is None` means it is gone (404 / not listed)."""

    key: ResourceKey
    state: dict[str, JSON] | None
    observed_at: datetime
    # The provider's schema check, deferred: the poller runs it only when the meaningful digest
    # differs from the stored one (whose state passed it). It raises a ProviderError.
    check: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The last stored state of a resource: what the next poll is diffed against."""

    key: ResourceKey
    state: dict[str, JSON] | None  # None once disappeared
    digest: str  # digest of the meaningful (non-volatile) fields
    sequence: int  # last event sequence number used for this resource
    updated_at: datetime
    # The row's write count: a write carrying version N lands only on version N-1 (or on no row when
    # N is 1), so two replicas that read the same version cannot both commit (compare-and-swap).
    version: int = 1

    def next_write(self) -> Snapshot:
        """This snapshot as the next write of its row (its version one on)."""
        return replace(self, version=self.version + 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One field that changed, by dotted path (`device_model.model`, `actions[reauthenticate]`)."""

    field: str
    old: JSON
    new: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """A rule fired for a resource: the unit partners and ops are notified about."""

    id: str
    rule_id: str
    type: str
    status: EventStatus
    severity: str
    key: ResourceKey
    sequence: int
    changes: tuple[Change, ...]
    state: dict[str, JSON] | None
    occurred_at: datetime
    # A `wattbridge.flapping` notice's summary (#14, `flap`): rendered into its bodies (the webhook's
    # `data.flap`); not a column of the events table (the row keeps `changes` first → last value).
    flap: dict[str, JSON] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One notification of one event to one channel. `id` is the webhook-id / Message-ID seed."""

    id: str
    event_id: str
    channel: str
    body: bytes  # rendered once at enqueue; every attempt and replay sends these bytes
    status: DeliveryStatus = "pending"
    attempts: int = 0
    next_attempt_at: datetime
    created_at: datetime
    last_error: str | None = None
    group_key: str | None = None  # digest group of a held delivery (or of a digest)
    # The fencing token of the current claim: it grows at each claim (and a hand-over's lease), and
    # an attempt is recorded only while the row still carries the claimer's token, so a worker
    # whose claim ran out (a paused replica) cannot overwrite its successor's record.
    claim_token: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """The record of one send attempt, kept for ops (`deliveries list`, the admin API)."""

    delivery_id: str
    number: int
    at: datetime
    ok: bool
    status_code: int | None = None
    latency_ms: float = 0.0
    error: str | None = None
    response_excerpt: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    """A resource watched by id (config, or registered at run time); it ends at a terminal state."""

    key: ResourceKey
    params: dict[str, JSON] = field(default_factory=dict)
    created_at: datetime
    ended_at: datetime | None = None
    end_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleState:
    """What one rule remembers about one resource. `due_at`: when the hold ends or the next repeat."""

    rule_id: str
    key: ResourceKey
    phase: RulePhase
    since: datetime  # when the trigger happened (the condition started holding)
    due_at: datetime | None = None
    repeats: int = 0  # reminders sent for the current firing
    last_fired_at: datetime | None = None  # for `cooldown`
    changes: tuple[Change, ...] = ()  # the triggering changes, carried into a delayed firing
    # Acknowledge, snooze and escalation (#14): which firing this is (the resource's event
    # sequence of the notification that opened it: what a link names), the escalation steps sent
    # and when the next is due, and who acknowledged or snoozed it. A new firing starts clean.
    firing_seq: int | None = None
    escalated: int = 0
    escalate_at: datetime | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    snoozed_until: datetime | None = None
    snoozed_by: str | None = None

    @property
    def next_due(self) -> datetime | None:
        """The earlier of the reminder (or hold end) and the next escalation step."""
        if self.escalate_at is None:
            return self.due_at
        return self.escalate_at if self.due_at is None else min(self.due_at, self.escalate_at)

    @property
    def forgettable(self) -> bool:
        """Idle with nothing to remember: the row can be deleted."""
        return self.phase == "idle" and self.last_fired_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Flip:
    """One change of a flap-watched field: when, and the field's value before and after."""

    at: datetime
    old: JSON
    new: JSON


@dataclass(frozen=True, slots=True, kw_only=True)
class FlapState:
    """What a rule's flap detection (#14, `flap`) remembers about one resource.

    Counting: `flips` are the field's changes still inside the window (oldest first), `due_at` when
    the newest leaves it (the row is then forgotten). Flapping (`since` set): `count` changes since
    it began, `first` / `last` the field's value before it and now, `muted` the rule's notifications
    held back meanwhile; `due_at` = the last change + `settle`, when it settles."""

    rule_id: str
    key: ResourceKey
    flips: tuple[Flip, ...] = ()
    since: datetime | None = None
    count: int = 0
    first: JSON = None
    last: JSON = None
    last_change_at: datetime | None = None
    muted: int = 0
    due_at: datetime | None = None

    @property
    def flapping(self) -> bool:
        return self.since is not None

    @property
    def forgettable(self) -> bool:
        """Not flapping and no change left in the window: the row can be deleted."""
        return self.since is None and not self.flips


@dataclass(frozen=True, slots=True, kw_only=True)
class PollResult:
    """Everything one observation commits, atomically: new snapshot + its events + their deliveries."""

    snapshot: Snapshot
    events: tuple[Event, ...] = ()
    deliveries: tuple[Delivery, ...] = ()
    end_watch: str | None = None  # the resource reached a terminal state: end its watch (reason)
    start_watch: Watch | None = None  # a watch this result starts (kept as it is if it exists)
    rule_states: tuple[RuleState, ...] = ()  # holds / firings / cooldowns this result moved
    traces: tuple[Trace, ...] = ()  # how each rule that looked at this result decided (#14, explain)
    flaps: tuple[FlapState, ...] = ()  # flap detection states this result moved (#14)


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One condition of a rule as it was evaluated: what it wants, what it got, whether it held."""

    name: str  # "to", "from", "above", "if", "condition", …
    want: JSON
    got: JSON
    ok: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Trace:
    """One evaluation of one rule on one resource, kept (by retention) to answer "why (not)?".

    `outcome` is one word (`sent`, `no-match`, `hold`, `cooldown`, `silenced`, `deferred`,
    `inhibited`, `flapping`, …); `reasons` say it for a person; `event_ids` link the deliveries."""

    rule_id: str
    key: ResourceKey
    at: datetime
    trigger: str  # "changed", "appeared", "disappeared", "timer"
    changes: tuple[Change, ...] = ()
    checks: tuple[Check, ...] = ()
    outcome: str
    reasons: tuple[str, ...] = ()
    event_ids: tuple[str, ...] = ()


def event_id(rule_id: str, key: ResourceKey, sequence: int, occurred_at: datetime) -> str:
    """Deterministic event id from (rule, resource, sequence, time).

    The time keeps ids unique when a store is reset and sequences start again: receivers deduplicate
    on `webhook-id`, so a reused id would silently swallow a new notification.
    """
    parts = (rule_id, key.provider, key.source, key.resource_id, str(sequence), occurred_at.isoformat())
    raw = "\x1f".join(parts).encode()
    return "evt_" + hashlib.blake2b(raw, digest_size=16).hexdigest()


def delivery_id(event_id: str, channel: str) -> str:
    """Deterministic delivery id (= `webhook-id`, email Message-ID seed), UNIQUE in the outbox."""
    raw = f"{event_id}\x1f{channel}".encode()
    return "msg_" + hashlib.blake2b(raw, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """Suppresses notifications matching every given matcher (globs) between `starts_at` and `ends_at`.

    Suppressed notifications are still recorded (status `suppressed`) and can be replayed.
    """

    id: str
    rule: str | None = None
    source: str | None = None
    resource: str | None = None  # resource id, exact or glob (`wb-*`)
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, rule_id: str, key: ResourceKey, now: datetime) -> bool:
        return (
            self.active(now)
            and _glob(self.rule, rule_id)
            and _glob(self.source, key.source)
            and _glob(self.resource, key.resource_id)
        )


def _glob(pattern: str | None, value: str) -> bool:
    return pattern is None or fnmatch.fnmatchcase(value, pattern)
