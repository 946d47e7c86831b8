"""Values the store tests commit: one poll result of a wallbox, its event and deliveries, a rule state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.model import (
    Change,
    Delivery,
    Event,
    PollResult,
    ResourceKey,
    RuleState,
    Snapshot,
    delivery_id,
    event_id,
)

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


def key(resource_id: str = "wb-1") -> ResourceKey:
    return ResourceKey(source="podero.wallbox", provider="podero", resource_id=resource_id)


def result(
    resource_id: str = "wb-1",
    *,
    sequence: int = 1,
    channels: tuple[str, ...] = ("partner",),
    at: datetime = T0,
    state: dict[str, object] | None = None,
    version: int | None = None,
) -> PollResult:
    """`version` is the snapshot write's (default: `sequence`, one write per transition)."""
    k = key(resource_id)
    state = {"is_charging": True, "power": 7.4} if state is None else state
    evt = Event(
        id=event_id("charging-started", k, sequence, at),
        rule_id="charging-started",
        type="wallbox.charging_started",
        status="firing",
        severity="info",
        key=k,
        sequence=sequence,
        changes=(Change(field="is_charging", old=False, new=True),),
        state=state,
        occurred_at=at,
    )
    deliveries = tuple(
        Delivery(
            id=delivery_id(evt.id, ch),
            event_id=evt.id,
            channel=ch,
            body=f'{{"event":"{evt.id}","channel":"{ch}"}}'.encode(),
            next_attempt_at=at,
            created_at=at,
        )
        for ch in channels
    )
    snap = Snapshot(
        key=k,
        state=state,
        digest=f"d{sequence}",
        sequence=sequence,
        updated_at=at,
        version=sequence if version is None else version,
    )
    return PollResult(snapshot=snap, events=(evt,), deliveries=deliveries)


def pending(resource_id: str = "wb-1") -> RuleState:
    return RuleState(
        rule_id="action-needed",
        key=key(resource_id),
        phase="pending",
        since=T0,
        due_at=T0 + timedelta(minutes=2),
        changes=(Change(field="action_needed", old=False, new=True),),
    )
