"""Fresh deliveries handed from a commit to this process's sender, without a claim round trip.

The poller asks `lease_fresh` before it commits: the deliveries of those results are written already
leased to the worker (the lease a claim would have taken), then `hand_over` gives it the committed
ones in memory. The row stays the source of truth: a crash lets the lease run out and a claim sends
them, with the same webhook-id and bytes; a commit that failed hands nothing over.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from bridge.model import Delivery, PollResult


@dataclass(slots=True)
class FreshLease:
    """Poll results as they are to be committed, their fresh deliveries leased to the worker."""

    results: Sequence[PollResult]
    leased: dict[str, Delivery] = field(default_factory=dict)  # id -> the leased copy


class Handoff(Protocol):
    def lease_fresh(self, results: Sequence[PollResult]) -> FreshLease:
        """Before a commit: `results` with as many fresh deliveries leased as the sender has room for."""
        ...

    def hand_over(self, lease: FreshLease, committed: Sequence[PollResult]) -> None:
        """After a commit (also a failed one: `committed` empty): send what was committed."""
        ...


def lease_fresh(
    results: Sequence[PollResult], *, now: datetime, until: datetime, room: int, channels: Container[str]
) -> FreshLease:
    """`results` with up to `room` of their due, pending deliveries to known channels leased `until`."""
    lease = FreshLease(results)
    if room <= 0 or not any(r.deliveries for r in results):
        return lease
    out: list[PollResult] = []
    for r in results:
        if room <= 0 or not r.deliveries:
            out.append(r)
            continue
        mine: list[Delivery] = []
        for d in r.deliveries:
            if room > 0 and d.status == "pending" and d.next_attempt_at <= now and d.channel in channels:
                # Leased as a claim would: until then, and under the next fencing token.
                d = replace(d, next_attempt_at=until, claim_token=d.claim_token + 1)
                lease.leased[d.id] = d
                room -= 1
            mine.append(d)
        out.append(replace(r, deliveries=tuple(mine)))
    if lease.leased:
        lease.results = out
    return lease
