"""Flap detection (#14, Nagios/Icinga style): `flap = { changes = 6, within = "10m", settle = "15m" }`.

A resource whose watched `field` changes more than `changes` times within `within` is *flapping*:
one `wattbridge.flapping` notice (status `firing`) goes out, and the rule's own notifications for
that resource are held back (kept as `suppressed`, replayable) until the field has not changed for
`settle`; then one notice with status `resolved` ("settled") summarises the spell: how many
changes, the value before it and now, how many notifications were held back.

The per-(rule, resource) state is a durable row (`FlapState`) written in the same transaction as
the poll or timer that moved it. Pure functions of (spec, stored state, the change, now): no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from bridge.model import JSON, FlapState, Flip, ResourceKey

FLAPPING_TYPE = "wattbridge.flapping"


@dataclass(frozen=True, slots=True, kw_only=True)
class FlapSpec:
    """A rule's compiled `flap` key."""

    changes: int  # flapping once the field changed MORE than this many times …
    within: timedelta  # … within this window
    settle: timedelta  # and settled once it has not changed for this long


@dataclass(frozen=True, slots=True, kw_only=True)
class FlapStep:
    """What one change did: the new state, and whether flapping started with it."""

    state: FlapState
    started: bool = False


def on_change(
    spec: FlapSpec,
    *,
    rule_id: str,
    key: ResourceKey,
    prior: FlapState | None,
    old: JSON,
    new: JSON,
    now: datetime,
) -> FlapStep:
    """The watched field changed (old → new) now."""
    if prior is not None and prior.flapping:
        moved = replace(prior, count=prior.count + 1, last=new, last_change_at=now, due_at=now + spec.settle)
        return FlapStep(state=moved)
    earliest = now - spec.within
    flips = tuple(f for f in (prior.flips if prior is not None else ()) if f.at > earliest)
    flips += (Flip(at=now, old=old, new=new),)
    if len(flips) > spec.changes:
        state = FlapState(
            rule_id=rule_id,
            key=key,
            since=flips[0].at,
            count=len(flips),
            first=flips[0].old,
            last=new,
            last_change_at=now,
            due_at=now + spec.settle,
        )
        return FlapStep(state=state, started=True)
    return FlapStep(
        state=FlapState(rule_id=rule_id, key=key, flips=flips, last_change_at=now, due_at=now + spec.within)
    )


def settled(st: FlapState) -> FlapState:
    """The state after a settled notice (or after a counting row's window passed): nothing kept."""
    return FlapState(rule_id=st.rule_id, key=st.key)


def muted_one(st: FlapState) -> FlapState:
    """One more of the rule's notifications was held back while flapping."""
    return replace(st, muted=st.muted + 1)


def _span(seconds: float) -> str:
    """`600` → `10m`, `5400` → `1h30m`: how durations are written in rule files."""
    s = int(seconds)
    parts = [(s // 86400, "d"), (s % 86400 // 3600, "h"), (s % 3600 // 60, "m"), (s % 60, "s")]
    return "".join(f"{n}{u}" for n, u in parts if n) or "0s"


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")


def summary(
    spec: FlapSpec, st: FlapState, *, field: str, now: datetime, settled_now: bool, active: bool | None = None
) -> dict[str, Any]:
    """`data.flap` of a flapping (or settled) notice: the contract `FlapSummary` documents it."""
    return {
        "field": field,
        "changes": st.count,
        "threshold": spec.changes,
        "within": _span(spec.within.total_seconds()),
        "settle": _span(spec.settle.total_seconds()),
        "since": _iso(st.since),
        "last_change_at": _iso(st.last_change_at),
        "first": st.first,
        "last": st.last,
        "muted": st.muted,
        "settled_at": _iso(now) if settled_now else None,
        "condition_now": active,
    }


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else "null" if value is None else str(value).lower()


def texts(flap: dict[str, Any], *, rule_id: str, resource: str, settled_now: bool) -> tuple[str, str]:
    """Subject and text of the notice for email, Apprise and Alertmanager channels."""
    field, n = flap["field"], flap["changes"]
    span = f"from {_show(flap['first'])} to {_show(flap['last'])}"
    if not settled_now:
        subject = f"Flapping: {rule_id} on {resource} ({field} changed {n} times within {flap['within']})"
        body = [
            f"{resource} is flapping: {field} changed {n} times within {flap['within']}",
            f"(more than {flap['threshold']}), {span}, since {flap['since']}.",
            "",
            f"The notifications of rule {rule_id} for it are held back until {field} has not changed",
            f"for {flap['settle']}; then one summary follows.",
        ]
    else:
        subject = f"Settled: {rule_id} on {resource} ({n} changes of {field})"
        cond = {True: "true", False: "false", None: "unknown"}[flap["condition_now"]]
        body = [
            f"{resource} has settled: {field} has not changed for {flap['settle']}.",
            f"While flapping ({flap['since']} to {flap['last_change_at']}): {n} changes, {span}.",
            f"The condition of rule {rule_id} is now {cond}.",
            f"{flap['muted']} notification(s) were held back (kept as suppressed: "
            "`wattbridge deliveries replay` sends one).",
        ]
    return subject, "\n".join(body) + "\n"


def reason(st: FlapState, spec: FlapSpec, field: str) -> str:
    """Why a notification was held back: what `wattbridge explain` and the delivery say."""
    return (
        f"suppressed: flapping since {_iso(st.since)} ({field} changed more than {spec.changes} times "
        f"within {_span(spec.within.total_seconds())}; held back until it settles)"
    )
