"""Silences: what ops create to mute notifications for a while (maintenance, a known outage).

A silence matches by rule id, source and resource id (each optional, each exact or a glob; at least
one given) between a start and an end. Matching notifications are still recorded, with status
`suppressed`, so nothing is lost: `deliveries replay` sends them later if wanted.
"""

from __future__ import annotations

import fnmatch
import secrets
from datetime import datetime, timedelta

from bridge.errors import BridgeError
from bridge.model import Silence
from bridge.rules.schema import SOURCES


class SilenceError(BridgeError):
    """A silence that cannot be created as asked (the message says what to change)."""


MAX_SILENCE = timedelta(days=366)


def new_silence(
    *,
    now: datetime,
    rule: str | None = None,
    source: str | None = None,
    resource: str | None = None,
    starts_at: datetime | None = None,
    ends_at: datetime | None = None,
    duration: timedelta | None = None,
    comment: str = "",
    created_by: str = "",
) -> Silence:
    """Validate and build a silence; `ends_at` or `duration` says how long it lasts."""
    if rule is None and source is None and resource is None:
        raise SilenceError("a silence needs at least one of rule, source or resource")
    if source is not None and not any(_glob_could_match(source, s) for s in SOURCES):
        raise SilenceError(f"source {source!r} matches no source (known: {', '.join(SOURCES)})")
    start = starts_at or now
    if (ends_at is None) == (duration is None):
        raise SilenceError("give exactly one of an end time or a duration")
    try:
        end = ends_at if ends_at is not None else start + (duration or timedelta())
    except OverflowError:
        raise SilenceError("the silence would end after the year 9999") from None
    if start.tzinfo is None or end.tzinfo is None:
        raise SilenceError("times need a timezone, e.g. 2026-11-23T18:00:00Z")
    if not (start.year >= 2000 and end.year <= 9998):
        # The store keeps ISO text; a year outside four digits would not read back.
        raise SilenceError(
            f"a silence must start after 2000 and end before 9999 (got {start.year}..{end.year})"
        )
    if end <= start:
        raise SilenceError(f"the silence ends ({end.isoformat()}) before it starts ({start.isoformat()})")
    if end - start > MAX_SILENCE:
        raise SilenceError("a silence lasts at most 366 days: forgotten silences hide real trouble")
    if not comment.strip():
        raise SilenceError("say why in a comment: the next person on call will want to know")
    return Silence(
        id="sil_" + secrets.token_hex(8),
        rule=rule,
        source=source,
        resource=resource,
        starts_at=start,
        ends_at=end,
        comment=comment.strip(),
        created_by=created_by,
        created_at=now,
    )


def _glob_could_match(pattern: str, source: str) -> bool:
    return fnmatch.fnmatchcase(source, pattern)
