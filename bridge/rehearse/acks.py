"""What the dry run says about acknowledgements and escalation (#14): an `ack` timeline line is
applied through the poller, as a link or the admin API would, and an escalation step's event is
labelled with its step."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from bridge.model import Delivery, Event, ResourceKey, RuleState
from bridge.poll.acking import AckRefused, AckRequest
from bridge.poll.cycle import Poller
from bridge.rehearse.timeline import Step
from bridge.rules.engine import RuleSet


def _fmt(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def ack_step(poller: Poller, step: Step) -> str:
    """Apply an `ack` line; the notice text (refusals are told, not raised: a test may expect one)."""
    req = AckRequest(
        action="snooze" if step.snooze is not None else "ack",
        rule_id=step.rule_id or "",
        resource_id=step.resource_id or "",
        provider=step.provider,
        source=step.source,
        snooze=step.snooze,
        by=step.by,
    )
    try:
        st = await poller.acknowledge(req)
    except AckRefused as exc:
        return f"ACK REFUSED {req.rule_id} {req.resource_id}: {exc.message}"
    where = f"{st.key.source} {st.key.resource_id}"
    if st.snoozed_until is not None and req.action == "snooze":
        until = _fmt(st.snoozed_until)
        return f"SNOOZED {st.rule_id} {where} by {step.by} until {until}: reminders and escalation wait"
    return (
        f"ACKNOWLEDGED {st.rule_id} {where} by {step.by}: no more reminders or escalation until it resolves"
    )


def again(
    rules: RuleSet,
    event: Event,
    deliveries: Sequence[Delivery],
    states: Mapping[tuple[str, ResourceKey], RuleState],
) -> str:
    """` (escalation 2)`, ` (reminder)` or nothing: why a firing notifies again."""
    rule, state = rules.by_id.get(event.rule_id), states.get((event.rule_id, event.key))
    if event.status != "firing" or state is None or rule is None:
        return ""
    sent = {d.channel for d in deliveries}
    if state.escalated and sent and not sent & set(rule.channels):
        return f" (escalation {state.escalated})"
    return " (reminder)" if state.repeats > 0 and sent & set(rule.channels) else ""
