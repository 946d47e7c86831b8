"""Stale rules without a push (#14): what one fetch read, and the timers it arms or resolves.

`reads` says which resources a fetch read successfully; `note` remembers the read times a stale
rule without a `field` counts from; `after` (under the poller's lock, after the commit) arms a timer
for each resource a stale rule has none for yet, and resolves a firing one whose resource was read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime

from bridge.model import PollResult, ResourceKey, RuleState, Snapshot
from bridge.poll.evaluate import Evaluator
from bridge.providers.base import FetchResult
from bridge.rules import stale
from bridge.rules.engine import RuleSet
from bridge.store.base import Store


def reads(fetched: FetchResult, asked: AbstractSet[str] | None, source: str | None) -> dict[str, set[str]]:
    """source → the resources this fetch read successfully (present, not failed, not skipped)."""
    failed = fetched.failures.keys() | fetched.skipped
    if asked is not None and source is not None:
        gone = {o.key.resource_id for o in fetched.observations if o.state is None}
        return {source: {r for r in asked if r not in failed and r not in gone}}
    out: dict[str, set[str]] = defaultdict(set)
    for o in fetched.observations:
        if o.state is not None and o.key.resource_id not in failed:
            out[o.key.source].add(o.key.resource_id)
    return out


def note(
    evaluate: Evaluator, rules: RuleSet, provider: str, read: Mapping[str, set[str]], now: datetime
) -> None:
    for source, ids in read.items():
        if any(r.field is None for r in rules.stale_rules(source)):
            evaluate.read(provider, source, ids, now)


async def after(
    store: Store,
    evaluate: Evaluator,
    rules: RuleSet,
    provider: str,
    read: Mapping[str, set[str]],
    now: datetime,
) -> tuple[list[RuleState], list[PollResult]]:
    """(timers to arm, results that resolve firings) for what was read."""
    armed: list[RuleState] = []
    results: list[PollResult] = []
    for source, ids in read.items():
        stale_rules = rules.stale_rules(source)
        if not stale_rules or not ids:
            continue
        for rule in stale_rules:
            todo = sorted(evaluate.unarmed(rule.id, provider, source, ids))
            if not todo:
                continue
            snapshots: dict[str, Snapshot] = {}
            if rule.field is not None:  # freshness is the reported timestamp, as stored
                snapshots = await store.get_snapshots_by_id(provider, source, todo)
            for rid in todo:
                key = ResourceKey(source=source, provider=provider, resource_id=rid)
                fresh = now
                if rule.field is not None:
                    snap = snapshots.get(rid)
                    fresh = stale.reported_at(snap.state if snap else None, rule.field) or now
                armed.append(stale.arm(rule.timing, rule_id=rule.id, key=key, fresh=fresh, now=now))
        on_reads = [r.id for r in stale_rules if r.field is None]
        if on_reads:
            for key, states in evaluate.stale_firing(provider, source, ids, on_reads).items():
                snapshot = await store.get_snapshot(key)
                result = evaluate.due(key, snapshot, states, rules, now)
                if result is not None and (result.events or result.rule_states):
                    results.append(result)
    return armed, results
