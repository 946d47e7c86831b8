"""From a rule firing to what the outbox stores: the event, and one rendered delivery per channel.

Rendering happens here, once, so every attempt and replay sends the same bytes. Two things decide a
delivery's first status: an active silence makes it `suppressed` (kept, replayable, not sent), and a
channel with `group_by` (or a rule with `group_by`, for its email channels) makes it `held` until
the digest that batches it is due (`digest.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog

from bridge.channels.base import Channel, RenderContext
from bridge.config.windows import Schedule, muted_until
from bridge.model import (
    Delivery,
    DeliveryStatus,
    Event,
    Observation,
    ResourceKey,
    Silence,
    delivery_id,
    event_id,
)
from bridge.notify.links import LinkSigner
from bridge.rules.engine import Firing, RuleSet
from bridge.rules.flap import FLAPPING_TYPE
from bridge.rules.flap import texts as flap_texts

log = structlog.get_logger(__name__)

GROUP_FIELDS = ("rule", "source", "provider", "severity", "type", "status")


class Notifier:
    def __init__(
        self,
        channels: Mapping[str, Channel],
        *,
        digest_groups: Mapping[str, Sequence[str]],
        event_types: Mapping[str, Callable[[str], bool]] | None = None,
        windows: Mapping[str, Schedule] | None = None,
        links: LinkSigner | None = None,
    ) -> None:
        self._channels = channels
        self._links = links  # signs acknowledge / snooze links (#14); None: no public_url
        self._windows = dict(windows or {})  # each channel's `mute` / `active` windows (#14)
        self._groups = {name: tuple(by) for name, by in digest_groups.items() if by}
        # A channel's event-type filter (`event_types` globs): no delivery for a type it does not take.
        self._accepts = dict(event_types or {})
        self.silences: list[Silence] = []  # the active ones, refreshed by the poller
        # Why each delivery just rendered got its status: (fate, reason), read once by the evaluator
        # for its trace (#14).
        self._why: dict[str, tuple[str, str]] = {}

    def event(self, obs: Observation, firing: Firing, sequence: int) -> Event:
        rule = firing.rule
        return Event(
            id=event_id(rule.id, obs.key, sequence, obs.observed_at),
            rule_id=rule.id,
            type=FLAPPING_TYPE if firing.flap is not None else rule.type,
            status=firing.status,
            severity=rule.severity,
            key=obs.key,
            sequence=sequence,
            changes=firing.changes,
            state=obs.state,
            occurred_at=obs.observed_at,
            flap=firing.flap,
        )

    def deliveries(
        self,
        event: Event,
        firing: Firing,
        old: dict[str, Any] | None,
        rules: RuleSet,
        *,
        inhibited: str | None = None,
        flapping: str | None = None,
    ) -> list[Delivery]:
        """One delivery per channel of the rule. Its first status: `suppressed` when a silence or an
        inhibiting rule (#14) mutes it, or its resource is flapping (`flapping`: why; #14), `held`
        when a time window defers it or a digest batches it."""
        rule = firing.rule
        out: list[Delivery] = []
        silenced = self.silenced_by(rule.id, event.key, event) if self.silences else None
        subject: str | None = None
        body: str | None = None
        html: str | None = None
        topic: str | None = None
        for name in firing.channels if firing.channels is not None else rule.channels:
            accepts = self._accepts.get(name)
            if accepts is not None and not accepts(event.type):
                continue
            channel = self._channels.get(name)
            if channel is None:
                # Rules are checked against the config at load; this only happens mid-reload.
                log.error("delivery.unknown_channel", rule=rule.id, channel=name)
                continue
            # Apprise services show a title and a body, Alertmanager a summary and a description:
            # the rule's [rule.email] texts serve both.
            if channel.kind in ("email", "apprise", "alertmanager") and subject is None and event.flap:
                # A flapping notice has its own text, whatever the rule's [rule.email] says.
                subject, body = flap_texts(
                    event.flap,
                    rule_id=rule.id,
                    resource=str(event.key),
                    settled_now=event.status == "resolved",
                )
            if channel.kind in ("email", "apprise", "alertmanager") and subject is None:
                context = template_context(event, old)
                subject, body = rules.render_email(rule, context=context)
                html = rules.render_email_html(rule, context=context)
            if channel.kind == "mqtt" and topic is None and rule.mqtt_topic is not None:
                topic = rule.mqtt_topic.render(template_context(event, old))
            ctx = RenderContext(
                old=old,
                rule_description=rule.description,
                email_subject=subject,
                email_body=body,
                email_html=html,
                mqtt_topic=topic,
                links=self._links_of(event, firing, name),
                escalation=firing.escalation,
            )
            group = self._groups.get(name)
            if rule.digest is not None and channel.kind == "email":
                group = rule.digest.group_by  # the rule's own digest; webhooks stay one per event
            status: DeliveryStatus = "pending"
            did = delivery_id(event.id, name)
            muted = silenced is not None or inhibited is not None or flapping is not None
            until = self._deferred_until(rule.schedule, name, event) if not muted else None
            if silenced is not None:
                status = "suppressed"
                self._why[did] = ("silenced", f"silenced by {silenced.id} ({silenced.comment})")
            elif inhibited is not None:
                status = "suppressed"
                self._why[did] = ("inhibited", inhibited)
            elif flapping is not None:
                status = "suppressed"
                self._why[did] = ("flapping", flapping)
            elif until is not None:
                status, group = "held", None
                self._why[did] = ("deferred", f"muted by a time window: deferred until {iso_utc(until)}")
            elif group is not None:
                status = "held"
                self._why[did] = ("digest", f"held for the digest {group_key(event, group)}")
            else:
                self._why[did] = ("queued", "queued")
            out.append(
                Delivery(
                    id=did,
                    event_id=event.id,
                    channel=name,
                    body=channel.render(event, ctx),
                    status=status,
                    next_attempt_at=event.occurred_at,
                    created_at=event.occurred_at,
                    # Why it is held back, for the API and dry runs (a silence names itself there).
                    last_error=self._why[did][1] if self._why[did][0] in ("flapping", "inhibited") else None,
                    group_key=deferred_key(until)
                    if until is not None
                    else group_key(event, group)
                    if group is not None
                    else None,
                )
            )
        if silenced is not None and out:
            log.info("delivery.silenced", event_id=event.id, rule=rule.id, silence=silenced.id)
        elif inhibited is not None and out:
            log.info("delivery.inhibited", event_id=event.id, rule=rule.id, reason=inhibited)
        return out

    def _links_of(self, event: Event, firing: Firing, channel: str) -> dict[str, Any] | None:
        """A firing notification of a rule that repeats or escalates carries links (#14)."""
        if self._links is None or event.status != "firing" or not firing.rule.acknowledgeable:
            return None
        seq = firing.firing_seq if firing.firing_seq is not None else event.sequence
        return self._links.links(firing.rule.id, event.key, seq, channel=channel, now=event.occurred_at)

    def _deferred_until(self, rule_windows: Schedule | None, channel: str, event: Event) -> datetime | None:
        """When the rule's and the channel's windows stop muting this notification (None: not muted)."""
        schedules = [s for s in (rule_windows, self._windows.get(channel)) if s is not None]
        return muted_until(schedules, event.occurred_at) if schedules else None

    def why(self, delivery: Delivery) -> tuple[str, str]:
        """(fate, reason) of a delivery this notifier just rendered (asked once: then forgotten)."""
        return self._why.pop(delivery.id, ("queued", "queued"))

    def silenced_by(self, rule_id: str, key: ResourceKey, event: Event) -> Silence | None:
        return next((s for s in self.silences if s.matches(rule_id, key, event.occurred_at)), None)


DEFERRED_PREFIX = "until="


def iso_utc(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def deferred_key(until: datetime) -> str:
    """`until=2026-11-23T06:00:00Z`: a deferred delivery's group; its digest is due at that time."""
    return DEFERRED_PREFIX + iso_utc(until)


def deferred_end(group_key: str) -> datetime | None:
    """The end of a deferred group's window (None: not a deferred group)."""
    if not group_key.startswith(DEFERRED_PREFIX):
        return None
    return datetime.fromisoformat(group_key.removeprefix(DEFERRED_PREFIX).split("|", 1)[0])


def group_key(event: Event, by: Sequence[str]) -> str:
    """`rule=provider-down|source=bridge.provider`: the digest a held delivery waits for."""
    values = {
        "rule": event.rule_id,
        "source": event.key.source,
        "provider": event.key.provider,
        "severity": event.severity,
        "type": event.type,
        "status": event.status,
    }
    return "|".join(f"{field}={values[field]}" for field in by)


def template_context(event: Event, old: dict[str, Any] | None) -> dict[str, Any]:
    """What `if` expressions and message templates see."""
    return {
        "old": old,
        "new": event.state,
        "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in event.changes],
        "event": {
            "id": event.id,
            "rule": event.rule_id,
            "type": event.type,
            "status": event.status,
            "severity": event.severity,
            "source": event.key.source,
            "provider": event.key.provider,
            "resource_id": event.key.resource_id,
            "sequence": event.sequence,
            "timestamp": event.occurred_at.isoformat(),
        },
    }
