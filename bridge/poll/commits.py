"""The poller's commits: group commit, a result alone when the group fails, results another writer
(a replica) committed first left out, and the mirrors (`mirrors.py`) brought in step with what
was committed. Mixed into `cycle.Poller` (through `ticks.PollTicks`).
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

import structlog

from bridge import errors
from bridge.lifecycle import finish_before_cancel
from bridge.model import HEALTH_SOURCE, PollResult, ResourceKey
from bridge.poll.diff import digest64
from bridge.poll.mirrors import PollerMirrors
from bridge.store.base import Fence

log = structlog.get_logger("bridge.poll.cycle")


class PollCommits(PollerMirrors):
    async def _commit(self, results: list[PollResult], fence: Fence | None = None) -> None:
        """Group commit: the results that arrived together in one transaction. Should that fail, each
        result is committed alone, so one bad result cannot take the others down with it (it is read
        again by the next poll: nothing is lost).

        A poll cancelled at shutdown stops at once while it fetches (a read loses nothing), but a
        commit it has begun runs to its end first, with the mirrors updated to match."""
        if not results:
            return
        await finish_before_cancel(self._commit_now(results, fence))

    async def _commit_now(self, results: list[PollResult], fence: Fence | None = None) -> None:
        lease = self._handoff.lease_fresh(results) if self._handoff is not None else None
        to_commit = list(lease.results) if lease is not None else results
        committed: list[PollResult] = []
        try:
            committed = await self._commit_fresh(to_commit, fence)
        except errors.FencedOut:
            raise  # the lease is another replica's: so is every result of this commit
        except errors.StoreError:
            if len(to_commit) == 1:
                raise
            committed = await self._commit_each(to_commit, fence)
        finally:
            if lease is not None:
                self._handoff.hand_over(lease, committed)  # type: ignore[union-attr]  # set with lease
        if self._metrics is not None:
            self._metrics.committed(committed)
        self._remember(st for r in committed for st in r.rule_states)
        self._evaluate.flaps.remember(st for r in committed for st in r.flaps)
        for r in committed:
            k = r.snapshot.key
            known = self._digests.get((k.provider, k.source))
            if known is not None:
                known[k.resource_id] = digest64(r.snapshot.digest)
        if self._handoff is None and any(r.deliveries for r in committed):
            self._on_committed()

    async def _commit_fresh(self, results: list[PollResult], fence: Fence | None = None) -> list[PollResult]:
        """Commit, leaving out the results another writer (a replica) committed first: their
        transaction rolled back, and the rest is committed again without them. What they would have
        written is forgotten here, so the next poll reads those resources from the store again."""
        todo = results
        while todo:
            try:
                if fence is None:  # polls: the compare-and-swap alone
                    await self._store.commit(todo)
                else:
                    await self._store.commit(todo, fence=fence)
                return todo
            except errors.CommitConflict as conflict:
                lost = set(conflict.keys)
                self._forget(lost)
                if self._metrics is not None:
                    self._metrics.conflicted(sum(1 for r in todo if r.snapshot.key in lost))
                log.info("poll.conflict", resources=len(lost), first=str(next(iter(lost), "")))
                kept = [r for r in todo if r.snapshot.key not in lost]
                if len(kept) == len(todo):  # named nothing of ours: do not loop
                    raise
                todo = kept
        return []

    def _forget(self, keys: AbstractSet[object]) -> None:
        """Drop what this replica believed about these resources (another one wrote them)."""
        for k in keys:
            if isinstance(k, ResourceKey):
                self._digests.get((k.provider, k.source), {}).pop(k.resource_id, None)
                if k.source == HEALTH_SOURCE:
                    self._health_snapshots.pop(k.provider, None)
                    self._health_stale.add(k.provider)

    async def _commit_each(self, results: list[PollResult], fence: Fence | None = None) -> list[PollResult]:
        committed: list[PollResult] = []
        first: errors.StoreError | None = None
        for r in results:
            try:
                await self._commit_fresh([r], fence)
            except errors.StoreError as exc:
                first = first or exc
                log.error("poll.result_failed", resource=str(r.snapshot.key), error=str(exc))
            else:
                committed.append(r)
        if not committed and first is not None:
            raise first  # nothing went through: the store itself is failing
        return committed
