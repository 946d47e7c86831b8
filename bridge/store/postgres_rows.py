"""Values <-> rows of the PostgreSQL store (asyncpg records: native times, bytes and booleans)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from bridge.model import (
    Attempt,
    Change,
    Delivery,
    Event,
    ResourceKey,
    RuleState,
    Silence,
    Snapshot,
    Watch,
)

Row = Sequence[Any]


def aware(when: datetime) -> datetime:
    """The store only takes timezone-aware times (as the SQLite store): a naive one is a bug upstream."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: the store only takes timezone-aware times")
    return when


def maybe_aware(when: datetime | None) -> datetime | None:
    return None if when is None else aware(when)


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _dumps_or_none(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _changes(text: str) -> tuple[Change, ...]:
    return tuple(Change(field=c["field"], old=c["old"], new=c["new"]) for c in orjson.loads(text))


def _changes_text(changes: Sequence[Change]) -> str:
    return dumps([{"field": c.field, "old": c.old, "new": c.new} for c in changes])


def snapshot_row(s: Snapshot) -> tuple[Any, ...]:
    k = s.key
    return (
        k.provider,
        k.source,
        k.resource_id,
        _dumps_or_none(s.state),
        s.digest,
        s.sequence,
        aware(s.updated_at),
        s.version,
    )


def snapshot(row: Row) -> Snapshot:
    provider, source, resource_id, state, digest, sequence, updated_at, version = row
    return Snapshot(
        key=ResourceKey(source=source, provider=provider, resource_id=resource_id),
        state=_loads(state),
        digest=digest,
        sequence=sequence,
        updated_at=updated_at,
        version=version,
    )


def event_row(e: Event) -> tuple[Any, ...]:
    k = e.key
    return (
        e.id,
        e.rule_id,
        e.type,
        e.status,
        e.severity,
        k.provider,
        k.source,
        k.resource_id,
        e.sequence,
        _changes_text(e.changes),
        _dumps_or_none(e.state),
        aware(e.occurred_at),
    )


def event(row: Row) -> Event:
    (id_, rule_id, type_, status, severity, provider, source, resource_id, sequence, changes, state, at) = row
    return Event(
        id=id_,
        rule_id=rule_id,
        type=type_,
        status=status,
        severity=severity,
        key=ResourceKey(source=source, provider=provider, resource_id=resource_id),
        sequence=sequence,
        changes=_changes(changes),
        state=_loads(state),
        occurred_at=at,
    )


def delivery_row(d: Delivery) -> tuple[Any, ...]:
    return (
        d.id,
        d.event_id,
        d.channel,
        d.body,
        d.status,
        d.attempts,
        aware(d.next_attempt_at),
        aware(d.created_at),
        d.last_error,
        d.group_key,
        d.claim_token,
    )


def delivery(row: Row) -> Delivery:
    id_, event_id, channel, body, status, attempts, next_at, created_at, last_error = row[:9]
    return Delivery(
        id=id_,
        event_id=event_id,
        channel=channel,
        body=bytes(body),
        status=status,
        attempts=attempts,
        next_attempt_at=next_at,
        created_at=created_at,
        last_error=last_error,
    )


def attempt_row(a: Attempt) -> tuple[Any, ...]:
    return (
        a.delivery_id,
        a.number,
        aware(a.at),
        a.ok,
        a.status_code,
        a.latency_ms,
        a.error,
        a.response_excerpt,
    )


def attempt(row: Row) -> Attempt:
    delivery_id, number, at, ok, status_code, latency_ms, error, excerpt = row
    return Attempt(
        delivery_id=delivery_id,
        number=number,
        at=at,
        ok=ok,
        status_code=status_code,
        latency_ms=latency_ms,
        error=error,
        response_excerpt=excerpt,
    )


def watch_row(w: Watch) -> tuple[Any, ...]:
    k = w.key
    return (k.provider, k.source, k.resource_id, dumps(w.params), aware(w.created_at))


def watch(row: Row) -> Watch:
    provider, source, resource_id, params, created_at, ended_at, end_reason = row
    return Watch(
        key=ResourceKey(provider=provider, source=source, resource_id=resource_id),
        params=_loads(params) or {},
        created_at=created_at,
        ended_at=ended_at,
        end_reason=end_reason,
    )


def rule_state_key(s: RuleState) -> tuple[Any, ...]:
    return (s.rule_id, s.key.provider, s.key.source, s.key.resource_id)


def rule_state_row(s: RuleState) -> tuple[Any, ...]:
    return (
        *rule_state_key(s),
        s.phase,
        aware(s.since),
        maybe_aware(s.due_at),
        s.repeats,
        maybe_aware(s.last_fired_at),
        _changes_text(s.changes),
        s.firing_seq,
        s.escalated,
        maybe_aware(s.escalate_at),
        s.acked_by,
        maybe_aware(s.acked_at),
        maybe_aware(s.snoozed_until),
        s.snoozed_by,
    )


def rule_state(row: Row) -> RuleState:
    rule_id, provider, source, resource_id, phase, since, due_at, repeats, last_fired_at, changes = row[:10]
    firing_seq, escalated, escalate_at, acked_by, acked_at, snoozed_until, snoozed_by = row[10:17]
    return RuleState(
        rule_id=rule_id,
        key=ResourceKey(provider=provider, source=source, resource_id=resource_id),
        phase=phase,
        since=since,
        due_at=due_at,
        repeats=repeats,
        last_fired_at=last_fired_at,
        changes=_changes(changes),
        firing_seq=firing_seq,
        escalated=escalated,
        escalate_at=escalate_at,
        acked_by=acked_by,
        acked_at=acked_at,
        snoozed_until=snoozed_until,
        snoozed_by=snoozed_by,
    )


def silence_row(s: Silence) -> tuple[Any, ...]:
    return (
        s.id,
        s.rule,
        s.source,
        s.resource,
        aware(s.starts_at),
        aware(s.ends_at),
        s.comment,
        s.created_by,
        aware(s.created_at),
    )


def silence(row: Row) -> Silence:
    id_, rule, source, resource, starts_at, ends_at, comment, created_by, created_at = row
    return Silence(
        id=id_,
        rule=rule,
        source=source,
        resource=resource,
        starts_at=starts_at,
        ends_at=ends_at,
        comment=comment,
        created_by=created_by,
        created_at=created_at,
    )


def key_of(row: Sequence[Any]) -> ResourceKey:
    """The resource a row starting (provider, source, resource_id) is about."""
    return ResourceKey(provider=row[0], source=row[1], resource_id=row[2])
