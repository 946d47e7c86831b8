"""The Channel protocol: render an event once (bytes stored in the outbox), send those bytes later.

Rendering happens when the delivery is queued, so every retry and replay sends the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from bridge.model import Delivery, Event


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderContext:
    """What a template may use besides the event: the previous state and the rule's own texts."""

    old: dict[str, Any] | None
    rule_description: str = ""
    email_subject: str | None = None  # rendered subject from the rule's [rule.email]
    email_body: str | None = None  # rendered body from the rule's [rule.email]
    email_html: str | None = None  # rendered HTML alternative from the rule's [rule.email] html
    mqtt_topic: str | None = None  # rendered topic from the rule's [rule.mqtt] topic
    # Acknowledge / snooze links of this notification (#14; `LinkSigner.links`), or None.
    links: dict[str, Any] | None = None
    escalation: int = 0  # >0: this notification is escalation step n of its firing (#14)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendResult:
    """How one attempt went. `permanent` failures are not retried; `retry_after` caps the next wait."""

    ok: bool
    status_code: int | None = None
    retry_after: float | None = None
    permanent: bool = False
    error: str | None = None
    latency_ms: float = 0.0
    response_excerpt: str | None = None


class Channel(Protocol):
    name: str
    kind: str

    def render(self, event: Event, ctx: RenderContext) -> bytes:
        """The exact bytes the outbox stores for this event on this channel."""
        ...

    async def send(self, delivery: Delivery) -> SendResult:
        """Send `delivery.body`; never raises for a receiver fault, returns a SendResult instead."""
        ...

    async def close(self) -> None: ...
