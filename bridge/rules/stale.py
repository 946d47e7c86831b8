"""Stale devices (#14): `stale_after = "6h"` fires once when a resource goes quiet, and re-arms (and,
with `resolve`, says so) when it reports again.

A stale rule never fires on a change. Its per-resource state is a durable timer like a hold's:
`pending` with `since` = when the resource last reported and `due_at` = `since + stale_after`. The
timer is lazy: a report does not rewrite the row; when it comes due, the resource's freshness is
looked at once (`fresh_at`) and the timer either moves on to `fresh + stale_after` or fires. So a
healthy fleet costs one row write per resource per `stale_after`, not one per poll.

Freshness is the rule's `field` (a timestamp the provider reports, read from the stored snapshot),
or without a field the resource's last successful read, which the poller keeps in memory. After a
restart the reads are not known yet: a pending timer counts from the start of the process at the
latest (a late alert, never a false one); a firing one waits for a read.

Pure functions of (timing, stored state, freshness, now): no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.model import ResourceKey, RuleState
from bridge.poll.diff import get_path
from bridge.rules.state import Decision, Timing, fire, on_due, unfired

TIMESTAMP_SUFFIXES = ("_at", "_since", "_utc")


def looks_like_timestamp(path: str) -> bool:
    """`current_state_last_updated_at`, `owner.updated_at`: the last segment names a time."""
    leaf = path.rsplit(".", 1)[-1].split("[", 1)[0]
    return leaf.endswith(TIMESTAMP_SUFFIXES)


def reported_at(state: Mapping[str, Any] | None, field: str) -> datetime | None:
    """The timestamp at `field` (ISO 8601; no zone means UTC), or None when absent or not a time."""
    value = get_path(state, field) if state is not None else None
    if not isinstance(value, str) or not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def arm(t: Timing, *, rule_id: str, key: ResourceKey, fresh: datetime, now: datetime) -> RuleState:
    """The first timer of a resource: due `stale_after` after it last reported."""
    return RuleState(rule_id=rule_id, key=key, phase="pending", since=fresh, due_at=_due(t, fresh, now))


def _due(t: Timing, fresh: datetime, now: datetime) -> datetime:
    return fresh + timedelta(seconds=t.stale_s or 0)


def check(t: Timing, *, prior: RuleState, fresh: datetime | None, now: datetime) -> Decision:
    """Look at a stale rule's resource now: move the timer on, fire, resolve, or remind.

    `fresh`: when the resource last reported (None: not known; a pending timer waits one more
    `stale_after`)."""
    stale = timedelta(seconds=t.stale_s or 0)
    if prior.phase == "firing":
        if fresh is not None and fresh > prior.since:  # it reported again
            rearmed = replace(
                unfired(prior), phase="pending", since=fresh, due_at=fresh + stale, repeats=0, changes=()
            )
            return Decision(state=rearmed, emit="resolved" if t.resolve else None)
        return on_due(t, prior=prior, active=True, now=now)  # reminders, if any
    if fresh is None:
        return Decision(state=replace(prior, due_at=now + stale))
    if fresh + stale > now:
        if prior.since == fresh and prior.due_at == fresh + stale:
            return Decision()
        return Decision(state=replace(prior, phase="pending", since=fresh, due_at=fresh + stale))
    if prior.due_at is not None and now < prior.due_at:
        return Decision()
    return fire(t, replace(prior, phase="pending", since=fresh), now)


def on_report(t: Timing, *, prior: RuleState, fresh: datetime | None, now: datetime) -> Decision:
    """A poll saw the resource (a change, or a read): only a firing rule cares at once."""
    if prior.phase == "firing" and fresh is not None and fresh > prior.since:
        return check(t, prior=prior, fresh=fresh, now=now)
    return Decision()


def gone(prior: RuleState) -> Decision:
    """The resource disappeared: nothing to watch any more (no alert: `disappeared` rules say so)."""
    return Decision(
        state=RuleState(
            rule_id=prior.rule_id,
            key=prior.key,
            phase="idle",
            since=prior.since,
            last_fired_at=prior.last_fired_at,
        )
    )
