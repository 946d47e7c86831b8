"""The evaluator's side of stale rules (#14): when a resource last reported or was read, the check of
a stale rule's state against it, and which resources a stale rule has no timer or a firing for
(what `stale_reads.py` arms and resolves after a read). Mixed into `evaluate.Evaluator`, which sets
the attributes declared here in its `__init__`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from datetime import datetime

from bridge.model import ResourceKey, RuleState
from bridge.rules import stale
from bridge.rules.engine import Rule
from bridge.rules.state import Decision


class StaleChecks:
    _states: dict[tuple[str, ResourceKey], RuleState]
    _firing: dict[str, dict[str, set[ResourceKey]]]
    _reads: dict[tuple[str, str], dict[str, float]]
    _kept: dict[tuple[str, str, str], set[str]]
    started_at: datetime | None

    def unarmed(self, rule_id: str, provider: str, source: str, ids: AbstractSet[str]) -> set[str]:
        """Which of these resources have no state of this rule yet."""
        return set(ids) - self._kept.get((rule_id, provider, source), set())

    def read(self, provider: str, source: str, ids: Iterable[str], now: datetime) -> None:
        """These resources were read successfully now (for stale rules without a field)."""
        seen = self._reads[(provider, source)]
        at = now.timestamp()
        for rid in ids:
            seen[rid] = at

    def fresh_at(self, rule: Rule, st: RuleState, state: Mapping[str, object] | None) -> datetime | None:
        """When the resource of a stale rule's state last reported, as far as is known."""
        if rule.field is not None:
            return stale.reported_at(state, rule.field)
        at = self._reads.get((st.key.provider, st.key.source), {}).get(st.key.resource_id)
        read = datetime.fromtimestamp(at, tz=st.since.tzinfo) if at is not None else None
        if st.phase == "firing":
            return read
        known = [t for t in (read, st.since, self.started_at) if t is not None]
        return max(known) if known else None

    def stale_check(
        self, rule: Rule, st: RuleState, state: Mapping[str, object] | None, now: datetime
    ) -> Decision:
        if state is None:
            return stale.gone(st)
        return stale.check(rule.timing, prior=st, fresh=self.fresh_at(rule, st, state), now=now)

    def stale_firing(
        self, provider: str, source: str, ids: AbstractSet[str], rule_ids: Iterable[str]
    ) -> dict[ResourceKey, list[RuleState]]:
        """Firing states of these stale rules (without a field) of resources among `ids`: a read
        resolves them. From whichever is smaller, the rule's firing states of the provider or the
        slice's ids: walking every state per poll slice was 10 s a poll at 250,000 devices
        (bench/stale.py), and a healthy fleet has nothing firing."""
        out: dict[ResourceKey, list[RuleState]] = defaultdict(list)
        for rule_id in rule_ids:
            firing = self._firing.get(rule_id, {}).get(provider, set())
            if len(firing) <= len(ids):
                keys = sorted((k for k in firing if k.source == source and k.resource_id in ids), key=str)
            else:
                keys = [ResourceKey(source=source, provider=provider, resource_id=r) for r in sorted(ids)]
            for k in keys:
                st = self._states.get((rule_id, k))
                if st is not None and st.phase == "firing":
                    out[k].append(st)
        return out
