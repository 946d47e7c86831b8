"""Acknowledge or snooze a firing (#14): from a request (a signed link, the admin API, the CLI) to
the rule state and trace to store. Pure: the poller applies it under its lock and commits it.

A request names the firing by rule and resource (provider and source narrow it when one resource id
is used by several), and, from a link, by its number: a link of a firing that has resolved (or
been followed by a new one) is refused, never applied to the next firing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from bridge.model import RuleState, Trace
from bridge.rules import acks

AckAction = Literal["ack", "snooze"]
MAX_SNOOZE = timedelta(days=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class AckRequest:
    action: AckAction
    rule_id: str
    resource_id: str
    by: str
    provider: str | None = None
    source: str | None = None
    firing_seq: int | None = None  # from a link: only this firing
    snooze: timedelta | None = None
    comment: str = ""


class AckRefused(Exception):
    """Why a request did nothing: `reason` is `not-firing`, `resolved`, `ambiguous`, `acknowledged`
    or `invalid`; `message` says it for a person."""

    def __init__(self, *, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _matches(st: RuleState, req: AckRequest) -> bool:
    k = st.key
    return (
        st.rule_id == req.rule_id
        and k.resource_id == req.resource_id
        and (req.provider is None or k.provider == req.provider)
        and (req.source is None or k.source == req.source)
    )


def apply(states: Iterable[RuleState], req: AckRequest, now: datetime) -> tuple[RuleState, Trace]:
    """The firing's new state and the trace recording who did what; AckRefused when nothing applies."""
    if req.action == "snooze" and (req.snooze is None or not timedelta(0) < req.snooze <= MAX_SNOOZE):
        raise AckRefused(reason="invalid", message="a snooze needs a length between 1s and 30d")
    found = [st for st in states if _matches(st, req)]
    firing = [st for st in found if st.phase == "firing"]
    where = f"{req.rule_id} on {req.resource_id}"
    if len(firing) > 1:
        keys = ", ".join(sorted(str(st.key) for st in firing))
        raise AckRefused(
            reason="ambiguous",
            message=f"{where} fires on several resources ({keys}): name the provider and source",
        )
    if not firing:
        if req.firing_seq is not None:
            raise AckRefused(reason="resolved", message=f"this firing of {where} has resolved: nothing to do")
        raise AckRefused(reason="not-firing", message=f"{where} is not firing")
    st = firing[0]
    if req.firing_seq is not None and st.firing_seq is not None and st.firing_seq != req.firing_seq:
        raise AckRefused(
            reason="resolved",
            message=f"this firing of {where} has resolved (it fires again since, as a new firing)",
        )
    if st.acked_at is not None:
        raise AckRefused(
            reason="acknowledged",
            message=f"{where} was already acknowledged by {st.acked_by} at {_iso(st.acked_at)}",
        )
    note = f" ({req.comment})" if req.comment else ""
    if req.action == "ack":
        new = acks.acknowledge(st, by=req.by, now=now)
        outcome, reason = "acknowledged", f"acknowledged by {req.by} at {_iso(now)}{note}"
    else:
        until = now + (req.snooze or timedelta(0))
        new = acks.snooze(st, by=req.by, until=until)
        outcome, reason = "snoozed", f"snoozed by {req.by} at {_iso(now)} until {_iso(until)}{note}"
    trace = Trace(
        rule_id=st.rule_id,
        key=st.key,
        at=now,
        trigger=req.action,
        changes=st.changes,
        outcome=outcome,
        reasons=(
            reason,
            "reminders and escalation stop until it resolves"
            if req.action == "ack"
            else "reminders and escalation wait until then",
        ),
    )
    return new, trace
