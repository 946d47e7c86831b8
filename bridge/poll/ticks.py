"""The rule timers' side of the poller: a tick ends the holds, sends the reminders and settles the
flapping that are due; a rule reload drops the timers of removed rules; an acknowledgement or snooze
is applied to its firing. The timer loop (`timers.py`) decides when a tick runs; this is what it does.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

import structlog

from bridge.model import FlapState, ResourceKey, RuleState, Snapshot
from bridge.poll import acking, flapping
from bridge.poll.acking import AckRequest
from bridge.poll.commits import PollCommits
from bridge.poll.mirrors import SLICE
from bridge.store.base import Fence

log = structlog.get_logger("bridge.poll.cycle")

TICK_LIMIT = 5000  # due timers one tick acts on (a second later, the next ones)


class PollTicks(PollCommits):
    async def tick(self, fence: Fence | None = None) -> int:
        """End the holds and send the reminders that are due now; returns how many notified.

        With `fence` (replicas: the `timers` lease), the commit lands only while this replica still
        holds that lease: a tick that paused past it raises FencedOut and writes nothing."""
        now = self._clock.now()
        if self._rulebook.current is not self._rules_seen:
            await self._forget_removed_rules()
        if self._shared:  # another replica may have started, moved or ended a timer
            async with self._lock:
                await self._refresh_states()
        due = self.next_due()
        if due is None or due > now:
            return 0
        async with self._lock:
            await self._refresh_silences(now)
            # Counting flap states whose window passed are forgotten: no notice, no snapshot write.
            gone = flapping.expired(self._evaluate.flaps, self._rulebook.current, now)
            if gone:
                await self._store.save_flap_states(gone)
                self._evaluate.flaps.remember(gone)
            timers = self._evaluate.due_now(now, TICK_LIMIT)
            settling = self._evaluate.flaps.due_now(now, TICK_LIMIT)
            keys = [*timers, *(k for k in settling if k not in timers)]
        fired = 0
        # At most TICK_LIMIT timers a tick (the rest: the next ticks), in slices, the lock released
        # between them: a fleet armed by one poll comes due at once (250,000 stale timers held the
        # lock 36 s in one piece, bench/stale.py), and polls must not wait that long. Each slice
        # takes the states as they are then (a poll in between may have moved one).
        for start in range(0, len(keys), SLICE):
            async with self._lock:
                rules = self._rulebook.current
                todo = [
                    (k, self._evaluate.due_of(k, now), self._evaluate.flaps.due_of(rules, k, now))
                    for k in keys[start : start + SLICE]
                ]
                todo = [(k, st, fl) for k, st, fl in todo if st or fl]
                snapshots = await self._snapshots_of([k for k, _, _ in todo])
                results = []
                for key, states, flaps in todo:
                    result = self._evaluate.due(key, snapshots.get(key), states, rules, now, flaps)
                    if result is not None:
                        results.append(result)
                await self._commit(results, fence)
            fired += sum(len(r.events) for r in results)
        return fired

    async def _snapshots_of(self, keys: list[ResourceKey]) -> dict[ResourceKey, Snapshot]:
        """The stored snapshots of these resources, one read per (provider, source)."""
        by_source: dict[tuple[str, str], list[str]] = defaultdict(list)
        for k in keys:
            by_source[(k.provider, k.source)].append(k.resource_id)
        out: dict[ResourceKey, Snapshot] = {}
        for (provider, source), ids in by_source.items():
            for snap in (await self._store.get_snapshots_by_id(provider, source, ids)).values():
                out[snap.key] = snap
        return out

    async def acknowledge(self, req: AckRequest) -> RuleState:
        """Acknowledge or snooze a firing (#14): stored with its trace, mirrored here; the timers see
        it from the next tick. Raises AckRefused when no open firing matches."""
        async with self._lock:
            if self._shared:  # the firing may be another replica's: catch up with what is stored
                await self._refresh_states()
            if req.provider is not None and req.source is not None:  # a link: one lookup
                key = ResourceKey(provider=req.provider, source=req.source, resource_id=req.resource_id)
                known = self._evaluate.state_of(req.rule_id, key)
                candidates = [known] if known is not None else []
            else:
                candidates = self._evaluate.states
            state, trace = acking.apply(candidates, req, self._clock.now())
            await self._store.record_ack(state, trace)
            self._remember([state])
        log.info(
            "rule.acknowledged" if req.action == "ack" else "rule.snoozed",
            rule=state.rule_id,
            resource=str(state.key),
            by=req.by,
            until=state.snoozed_until.isoformat() if req.action == "snooze" and state.snoozed_until else None,
        )
        return state

    async def _forget_removed_rules(self) -> None:
        """After a reload: drop the timers of rules that no longer exist (kept ones continue)."""
        rules = self._rulebook.current
        known = {st.rule_id for st in self._evaluate.states} | {f.rule_id for f in self.flap_states}
        gone = sorted(known - rules.by_id.keys())
        if gone:
            async with self._lock:
                await self._store.delete_rule_states(gone)
                self._remember(
                    replace(st, phase="idle", last_fired_at=None)
                    for st in self._evaluate.states
                    if st.rule_id in gone
                )
                self._evaluate.flaps.remember(
                    FlapState(rule_id=f.rule_id, key=f.key) for f in self.flap_states if f.rule_id in gone
                )
            log.info("rules.timers_dropped", rules=gone)
        self._rules_seen = rules
