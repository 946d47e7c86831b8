"""What a complete listing means: a stored resource it no longer shows has disappeared, and one it
shows for the first time after the first listing has appeared (the first listing only baselines).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime

from bridge.model import Observation, PollResult, ResourceKey, Snapshot
from bridge.poll.diff import digest64

# Resource id of the row that records "a complete listing of this source was baselined".
LISTING_MARKER = ""
_GONE = digest64("gone")


@dataclass(frozen=True, slots=True)
class Listing:
    observations: list[Observation]  # what was listed, plus a `state=None` one per disappearance
    appears: bool  # a resource not stored before has appeared (False on the first listing)
    marker: PollResult | None  # the marker row to commit with the first listing


def complete_listing(
    provider: str,
    source: str,
    observations: Sequence[Observation],
    known: Mapping[str, int],
    now: datetime,
    *,
    kept: AbstractSet[str] = frozenset(),
    window: bool = False,
) -> Listing:
    """`known` maps each stored resource id of the source to its digest in 64 bits; `kept` are ids
    listed but not read this time (failed, or backing off): they have not disappeared. A `window`
    listing (over a sliding time window) only appears resources: what it misses slid out, not away."""
    appears = LISTING_MARKER in known
    seen = {o.key.resource_id for o in observations} | kept
    gone = [
        Observation(
            key=ResourceKey(source=source, provider=provider, resource_id=rid), state=None, observed_at=now
        )
        for rid, d in known.items()
        if rid and rid not in seen and d != _GONE and not window
    ]
    marker = None
    if not appears:
        key = ResourceKey(source=source, provider=provider, resource_id=LISTING_MARKER)
        marker = PollResult(
            snapshot=Snapshot(key=key, state=None, digest="listing", sequence=0, updated_at=now)
        )
    return Listing(observations=[*observations, *gone], appears=appears, marker=marker)
