"""The pipeline's values: what one poll observes, what changed, what fired, what to deliver.

Frozen, slotted, keyword-only dataclasses: cheap to make, safe to share between stages.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

JSON = Any
EventKind = Literal["changed", "appeared", "disappeared"]
EventStatus = Literal["firing", "resolved"]
DeliveryStatus = Literal["pending", "delivered", "dead"]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The last stored state of a resource: what the next poll is diffed against."""

    key: ResourceKey
    state: dict[str, JSON] | None  # None once disappeared
    digest: str  # digest of the meaningful (non-volatile) fields
    sequence: int  # last event sequence number used for this resource
    updated_at: datetime


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
class PollResult:
    """Everything one observation commits, atomically: new snapshot + its events + their deliveries."""

    snapshot: Snapshot
    events: tuple[Event, ...] = ()
    deliveries: tuple[Delivery, ...] = ()
    end_watch: str | None = None  # the resource reached a terminal state: end its watch (reason)


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
