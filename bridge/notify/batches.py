"""Digests: what fires together goes out as one message, not one per event.

A channel with `group_by` (or a rule with `group_by`, on its email channels) holds its deliveries
(status `held`, with a group key such as `rule=wallbox-disconnected|source=podero.wallbox`). Once
the oldest held delivery of a group has waited `group_wait` (the rule's, when it has its own digest;
else the channel's), and the group's previous digest is at least `group_interval` old, one digest
delivery is queued listing them all, and the members become `digested`, in one transaction: a crash
neither loses a member nor sends it twice. The digest is an ordinary outbox delivery (retries, dead
letters, replay) under its own stable id: one email listing the members, or, on a webhook channel
that asked for digests, one `wattbridge.digest` webhook carrying their envelopes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog

from bridge.channels.webhook import iso_z
from bridge.clock import Clock
from bridge.config.models import ChannelConfig, EmailChannelConfig, WebhookChannelConfig
from bridge.model import CHANNEL_PROVIDER, CHANNEL_SOURCE, Delivery, Event, ResourceKey, delivery_id, event_id
from bridge.notify.render import deferred_end
from bridge.rules.engine import Digest as RuleDigest
from bridge.rules.engine import RuleSet
from bridge.rules.flap import FLAPPING_TYPE
from bridge.store.base import Fence, HeldGroup, Store

log = structlog.get_logger(__name__)

DIGEST_TYPE = "wattbridge.digest"
FULL_ENTRIES = 100  # entries shown in full; the rest are listed by subject only (mail size)


def digest_configs(
    channels: Mapping[str, ChannelConfig],
) -> dict[str, EmailChannelConfig | WebhookChannelConfig]:
    """The channels that can send digests (email, webhook); MQTT, Apprise and Alertmanager cannot."""
    return {n: c for n, c in channels.items() if isinstance(c, EmailChannelConfig | WebhookChannelConfig)}


class Digester:
    def __init__(
        self,
        store: Store,
        configs: Mapping[str, EmailChannelConfig | WebhookChannelConfig],
        *,
        clock: Clock,
        on_committed: Callable[[], None] = lambda: None,
        rules: Callable[[], RuleSet] | None = None,
    ) -> None:
        self._store = store
        self._rules = rules  # the current rule set: rules with their own digest set its timing
        self._configs = configs
        self._clock = clock
        self._on_committed = on_committed

    async def tick(self, fence: Fence | None = None) -> int:
        """Queue every digest that is due now; returns how many. With `fence` (replicas: the
        `timers` lease) each digest lands only while this replica holds it (else FencedOut)."""
        now = self._clock.now()
        queued = 0
        for group in await self._store.held_groups():
            if not self._due(group, now):
                continue
            members = await self._store.list_held(group.channel, group.group_key)
            if not members:
                continue
            if deferred_end(group.group_key) is not None:
                queued += await self._end_deferral(group, members, now, fence)
                continue
            cfg = self._configs.get(group.channel)
            event, digest = build_digest(group, members, now, webhook=isinstance(cfg, WebhookChannelConfig))
            await self._store.commit_digest(event, digest, [m.id for m in members], fence=fence)
            log.info("digest.queued", channel=group.channel, group=group.group_key, events=len(members))
            queued += 1
        if queued:
            self._on_committed()
        return queued

    async def next_due(self) -> datetime | None:
        """When the earliest held group's digest is due (None: nothing is held)."""
        return min((self._due_at(g) for g in await self._store.held_groups()), default=None)

    def _due(self, group: HeldGroup, now: datetime) -> bool:
        return now >= self._due_at(group)

    async def _end_deferral(
        self, group: HeldGroup, members: Sequence[Delivery], now: datetime, fence: Fence | None = None
    ) -> int:
        """A time window ended (#14): what it deferred goes out, less what resolved meanwhile. An
        email channel (or a webhook that takes digests) gets one digest; any other channel gets each
        notification on its own, as it would have without the window."""
        events = {m.id: await self._store.get_event(m.event_id) for m in members}
        dropped = resolved_meanwhile(members, events)
        kept = [m for m in members if m.id not in dropped]
        cfg = self._configs.get(group.channel)
        webhook = isinstance(cfg, WebhookChannelConfig)
        digests = isinstance(cfg, EmailChannelConfig) or bool(webhook and cfg is not None and cfg.group_by)
        drop = [(i, "resolved before the time window ended: left out of its digest") for i in dropped]
        if kept and digests:
            event, digest = build_digest(group, kept, now, webhook=webhook)
            await self._store.commit_digest(event, digest, [m.id for m in kept], fence=fence)
            await self._store.settle_held(release=(), drop=drop, now=now, fence=fence)
        else:
            await self._store.settle_held(release=[m.id for m in kept], drop=drop, now=now, fence=fence)
        log.info(
            "window.ended",
            channel=group.channel,
            deferred=len(members),
            left_out=len(dropped),
            digest=bool(kept and digests),
        )
        return 1 if kept else 0

    def _due_at(self, group: HeldGroup) -> datetime:
        end = deferred_end(group.group_key)
        if end is not None:  # deferred by a time window: due when it ends, whatever the grouping
            return end
        rule = self._rule_digest(group.group_key)
        cfg = self._configs.get(group.channel)
        if rule is not None:
            wait, interval = rule.wait, rule.interval
        elif cfg is not None and cfg.group_by:
            wait, interval = cfg.group_wait, cfg.group_interval
        else:  # grouping was removed from the config (or the rule): release what is still held
            wait = interval = timedelta(0)
        due = group.first_at + wait
        if group.last_digest_at is not None:
            due = max(due, group.last_digest_at + interval)
        return due

    def _rule_digest(self, group_key: str) -> RuleDigest | None:
        """The digest settings of the rule a group key names (`rule=ID|…`), when it has its own."""
        if self._rules is None or not group_key.startswith("rule="):
            return None
        rule = self._rules().by_id.get(group_key.split("|", 1)[0].removeprefix("rule="))
        return rule.digest if rule is not None else None


def resolved_meanwhile(members: Sequence[Delivery], events: Mapping[str, Event | None]) -> set[str]:
    """Deferred deliveries to leave out: a firing and the resolution that followed it, both deferred
    (a resolution whose firing went out before the window is kept: the receiver must hear it).
    Flapping notices (#14) are kept: the settled one says how the spell ended, and they must not
    pair with the rule's own firings."""
    open_firing: dict[tuple[str, ResourceKey], list[str]] = {}
    dropped: set[str] = set()
    for m in sorted(members, key=lambda d: d.created_at):
        event = events.get(m.id)
        if event is None or event.type == FLAPPING_TYPE:
            continue
        k = (event.rule_id, event.key)
        if event.status == "firing":
            open_firing.setdefault(k, []).append(m.id)  # the firing and its reminders
        elif k in open_firing:
            dropped |= {*open_firing.pop(k), m.id}
    return dropped


def build_digest(
    group: HeldGroup, members: Sequence[Delivery], now: datetime, *, webhook: bool = False
) -> tuple[Event, Delivery]:
    key = ResourceKey(source=CHANNEL_SOURCE, provider=CHANNEL_PROVIDER, resource_id=group.channel)
    event = Event(
        id=event_id(DIGEST_TYPE, key, len(members), now),
        rule_id=DIGEST_TYPE,
        type=DIGEST_TYPE,
        status="firing",
        severity="info",
        key=key,
        sequence=0,
        changes=(),
        state={"group": group.group_key, "count": len(members), "deliveries": [m.id for m in members]},
        occurred_at=now,
    )
    digest = Delivery(
        id=delivery_id(event.id, group.channel),
        event_id=event.id,
        channel=group.channel,
        body=webhook_digest_body(group.group_key, members, now)
        if webhook
        else digest_body(group.group_key, members),
        next_attempt_at=now,
        created_at=now,
        group_key=group.group_key,
    )
    return event, digest


def digest_body(group_key: str, members: Sequence[Delivery]) -> bytes:
    """One email (the email channel's stored format) listing every member's subject and text."""
    parsed = [_email(m) for m in members]
    to: list[str] = next((p["to"] for p in parsed if p.get("to")), [])
    if len(parsed) == 1:
        return orjson.dumps({"subject": parsed[0]["subject"], "text": parsed[0]["text"], "to": to})
    first, last = members[0].created_at, members[-1].created_at
    lines = [
        f"{len(parsed)} notifications ({group_key.replace('|', ', ')}),",
        f"from {first.isoformat()} to {last.isoformat()}.",
        "",
    ]
    for i, p in enumerate(parsed, 1):
        if i <= FULL_ENTRIES:
            lines += [f"── {i}. {p['subject']}", str(p["text"]).rstrip(), ""]
        else:
            lines.append(f"{i}. {p['subject']}")
    subject = f"{len(parsed)} notifications: {_common_subject(parsed)}"
    return orjson.dumps({"subject": subject, "text": "\n".join(lines) + "\n", "to": to})


def webhook_digest_body(group_key: str, members: Sequence[Delivery], now: datetime) -> bytes:
    """One `wattbridge.digest` webhook: the group and every member's envelope, in firing order."""
    events: list[Any] = []
    for m in members:
        try:
            events.append(orjson.loads(m.body))
        except orjson.JSONDecodeError:
            events.append(m.body.decode("utf-8", "replace"))
    group = dict(part.split("=", 1) for part in group_key.split("|") if "=" in part)
    return orjson.dumps(
        {
            "type": DIGEST_TYPE,
            "timestamp": iso_z(now),
            "data": {"group": group, "count": len(events), "events": events},
        }
    )


def _email(d: Delivery) -> dict[str, Any]:
    try:
        body = orjson.loads(d.body)
        if isinstance(body, dict) and "subject" in body and "text" in body:
            return body
    except orjson.JSONDecodeError:
        pass
    return {"subject": d.event_id, "text": d.body.decode("utf-8", "replace"), "to": []}


def _common_subject(parsed: Sequence[dict[str, Any]]) -> str:
    subjects = {str(p["subject"]) for p in parsed}
    if len(subjects) == 1:
        return subjects.pop()
    return f"{sorted(subjects)[0]} and {len(subjects) - 1} more"
