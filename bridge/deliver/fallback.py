"""Fallback channels (#14): a dead letter goes on to the channel's `fallback`.

When a delivery becomes dead (its retries ran out, the receiver rejected it for good, or the channel
is disabled by a 410 Gone), the same event is rendered for the channel named by `fallback` and
queued there, in the transaction that records the dead attempt (`AttemptOutcome.fallback`). Its id is
the usual `delivery_id(event, channel)`: a fallback that already has this event (the rule names it
too, or a chain led back to it) gets nothing twice, so a chain of fallbacks always ends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

import structlog

from bridge.channels.base import Channel, RenderContext
from bridge.model import Delivery, delivery_id
from bridge.notify.render import template_context
from bridge.rules.engine import RuleSet
from bridge.store.base import Store

log = structlog.get_logger(__name__)

TEXT_KINDS = ("email", "apprise", "alertmanager")  # channels that show the rule's subject and body


class FallbackRouter:
    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        fallbacks: Mapping[str, str],
        *,
        rules: Callable[[], RuleSet] | None = None,
    ) -> None:
        self._store = store
        self._channels = channels
        self._fallbacks = {name: to for name, to in fallbacks.items() if to in channels}
        self._rules = rules

    def target(self, channel: str) -> str | None:
        return self._fallbacks.get(channel)

    async def copy(self, dead: Delivery, *, error: str | None, now: datetime) -> Delivery | None:
        """The dead letter rendered for its channel's fallback (None: no fallback, or its event is gone)."""
        target = self._fallbacks.get(dead.channel)
        if target is None:
            return None
        event = await self._store.get_event(dead.event_id)
        if event is None:
            return None
        channel = self._channels[target]
        rules = self._rules() if self._rules is not None else None
        rule = rules.by_id.get(event.rule_id) if rules is not None else None
        why = f"Sent to {target!r}: channel {dead.channel!r} could not deliver it ({error or 'dead letter'})"
        ctx = RenderContext(old=None, rule_description=rule.description if rule is not None else "")
        if channel.kind in TEXT_KINDS:
            subject = body = None
            if rule is not None and rules is not None:
                subject, body = rules.render_email(rule, context=template_context(event, None))
            ctx = RenderContext(
                old=None,
                rule_description=ctx.rule_description,
                email_subject=subject,
                email_body=f"{why}\n\n{body}" if body is not None else None,
            )
        return Delivery(
            id=delivery_id(event.id, target),
            event_id=event.id,
            channel=target,
            body=channel.render(event, ctx),
            next_attempt_at=now,
            created_at=now,
        )
