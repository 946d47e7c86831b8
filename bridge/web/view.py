"""What the status page shows, read from the running app: health boards, the store, the rule book.

Only reads, bounded: a page load costs a handful of indexed queries however big the store is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aiohttp import web

from bridge.app_keys import CLOCK, CONFIG, DELIVERY, HEALTH, POLLER, RULEBOOK, STORE
from bridge.logs import scrub
from bridge.model import Delivery, Event
from bridge.notify.render import deferred_end
from bridge.web.firings import FiringRow, firing_rows

PENDING_SHOWN = 25
BACKOFF_SHOWN = 5  # resources backing off named per provider; the rest are counted
DEAD_SHOWN = 25
DELIVERED_SHOWN = 10
EVENTS_SHOWN = 25
FLAPPING_SHOWN = 50
# Delivery rows find their event among this many latest events before asking the store one by one.
RECENT_EVENTS = 500


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderRow:
    name: str
    kind: str
    status: str
    consecutive_failures: int
    last_poll_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    deferred_until: datetime | None = None  # every request waits until then (a 429)
    deferred_cause: str | None = None
    backing_off: tuple[BackoffRow, ...] = ()  # the first few, soonest back first
    resources_backing_off: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BackoffRow:
    resource_id: str
    until: datetime
    cause: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRow:
    name: str
    kind: str
    status: str
    consecutive_failures: int
    last_error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRow:
    id: str
    channel: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime
    last_error: str | None
    event_id: str
    rule_id: str | None
    resource: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleRow:
    id: str
    description: str
    source: str
    field: str | None
    severity: str
    channels: tuple[str, ...]
    last_fired_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeferredRow:
    """Notifications a time window deferred (#14): how many, to which channel, until when."""

    channel: str
    count: int
    since: datetime
    until: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class FlappingRow:
    """A resource flapping under a rule's `flap` (#14): its notifications are held back until then."""

    rule: str
    resource: str
    field: str | None
    since: datetime
    changes: int
    muted: int
    settles_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusView:
    now: datetime
    providers: list[ProviderRow]
    channels: list[ChannelRow]
    outbox_depth: int
    oldest_pending_at: datetime | None
    pending: list[DeliveryRow]
    dead: list[DeliveryRow]
    delivered: list[DeliveryRow]
    events: list[Event]
    rules: list[RuleRow]
    deferred: list[DeferredRow]
    firings: list[FiringRow] = field(default_factory=list)  # open firings, acked / snoozed (#14)
    flapping: list[FlappingRow] = field(default_factory=list)
    dead_limit: int = DEAD_SHOWN


async def build_view(app: web.Application) -> StatusView:
    store, now = app[STORE], app[CLOCK].now()
    recent = await store.list_events(limit=RECENT_EVENTS)
    by_id = {e.id: e for e in recent}

    async def rows(found: list[Delivery]) -> list[DeliveryRow]:
        out = []
        for d in found:
            event = by_id.get(d.event_id) or await store.get_event(d.event_id)
            out.append(_delivery_row(d, event))
        return out

    return StatusView(
        now=now,
        providers=_providers(app, now),
        channels=_channels(app),
        outbox_depth=await store.outbox_depth(),
        oldest_pending_at=await store.oldest_pending_at(),
        pending=await rows(await store.list_deliveries(status="pending", limit=PENDING_SHOWN)),
        dead=await rows(await store.list_deliveries(status="dead", limit=DEAD_SHOWN)),
        delivered=await rows(await store.list_deliveries(status="delivered", limit=DELIVERED_SHOWN)),
        events=recent[:EVENTS_SHOWN],
        rules=await _rules(app),
        deferred=sorted(
            (
                DeferredRow(channel=g.channel, count=g.count, since=g.first_at, until=until)
                for g in await store.held_groups()
                if (until := deferred_end(g.group_key)) is not None
            ),
            key=lambda r: (r.until, r.channel),
        ),
        firings=await firing_rows(app, now),
        flapping=_flapping(app),
    )


def _flapping(app: web.Application) -> list[FlappingRow]:
    rules = app[RULEBOOK].current.by_id
    return [
        FlappingRow(
            rule=st.rule_id,
            resource=str(st.key),
            field=rule.field if (rule := rules.get(st.rule_id)) is not None else None,
            since=st.since,
            changes=st.count,
            muted=st.muted,
            settles_at=st.due_at,
        )
        for st in sorted(app[POLLER].flapping, key=lambda s: (s.since, s.rule_id, str(s.key)))
        if st.since is not None
    ][:FLAPPING_SHOWN]


def _providers(app: web.Application, now: datetime) -> list[ProviderRow]:
    config = app[CONFIG]
    out = []
    for name, health in sorted(app[HEALTH].providers.items()):
        cfg = config.providers.get(name)
        deferred, backing_off = health.deferral(now), health.backing_off(now)
        out.append(
            ProviderRow(
                name=name,
                kind=cfg.kind if cfg is not None else "?",
                status=health.status,
                consecutive_failures=health.consecutive_failures,
                last_poll_at=health.last_poll_at,
                last_success_at=health.last_success_at,
                last_error=scrub(health.last_error) if health.last_error else None,
                deferred_until=deferred.until if deferred is not None else None,
                deferred_cause=deferred.cause if deferred is not None else None,
                backing_off=tuple(
                    BackoffRow(resource_id=rid, until=d.until, cause=d.cause)
                    for rid, d in list(backing_off.items())[:BACKOFF_SHOWN]
                ),
                resources_backing_off=len(backing_off),
            )
        )
    return out


def _channels(app: web.Application) -> list[ChannelRow]:
    worker = app[DELIVERY]
    out = []
    for name, cfg in sorted(app[CONFIG].channels.items()):
        state = worker.channel_state(name)
        error = state.get("last_error")
        out.append(
            ChannelRow(
                name=name,
                kind=cfg.kind,
                status=str(state["status"]),
                consecutive_failures=int(state["consecutive_failures"]),
                last_error=scrub(str(error)) if error else None,
            )
        )
    return out


def _delivery_row(d: Delivery, event: Event | None) -> DeliveryRow:
    return DeliveryRow(
        id=d.id,
        channel=d.channel,
        status=d.status,
        attempts=d.attempts,
        created_at=d.created_at,
        next_attempt_at=d.next_attempt_at,
        last_error=scrub(d.last_error) if d.last_error else None,
        event_id=d.event_id,
        rule_id=event.rule_id if event is not None else None,
        resource=str(event.key) if event is not None else None,
    )


async def _rules(app: web.Application) -> list[RuleRow]:
    rules = app[RULEBOOK].current.rules
    # From the store, not from the latest events: a rule that fired long ago still shows when.
    last = await app[STORE].last_firings([r.id for r in rules])
    for st in app[POLLER].rule_states:  # cooldown rules remember their last firing for good
        if st.last_fired_at is not None and (st.rule_id not in last or st.last_fired_at > last[st.rule_id]):
            last[st.rule_id] = st.last_fired_at
    return [
        RuleRow(
            id=r.id,
            description=r.description,
            source=r.source,
            field=r.field,
            severity=r.severity,
            channels=r.channels,
            last_fired_at=last.get(r.id),
        )
        for r in rules
    ]
