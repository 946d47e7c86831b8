"""When the earliest timer is due, without walking every timer: a min-heap with lazy deletion.

The timer loop asks once a second whether anything is due. Walking every rule state for that cost
15-25 ms a tick at 250,000 stale timers (bench/stale.py), most of the time to find nothing. Each
state that gets a due time is pushed here; an entry whose state has moved on (or gone) since is
dropped when it reaches the top, so `earliest` is O(log n) amortised, and the heap is rebuilt when
stale entries outnumber live ones.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DueIndex(Generic[K]):
    def __init__(self, due_of: Callable[[K], datetime | None]) -> None:
        self._due_of = due_of  # the current due time of a key (None: no timer, or gone)
        self._heap: list[tuple[datetime, int, K]] = []
        self._n = 0  # tie-breaker: keys need not be orderable

    def push(self, key: K, due_at: datetime | None) -> None:
        if due_at is None:
            return
        self._n += 1
        heapq.heappush(self._heap, (due_at, self._n, key))

    def rebuild(self, items: Iterable[tuple[K, datetime | None]]) -> None:
        self._heap = []
        for key, due_at in items:
            if due_at is not None:
                self._n += 1
                self._heap.append((due_at, self._n, key))
        heapq.heapify(self._heap)

    def due(self, now: datetime, limit: int | None = None) -> list[K]:
        """The keys due at `now`, earliest first, at most `limit`. They stay indexed: a timer that
        is not moved on when acted upon (its state unchanged) is due again at the next look."""
        heap = self._heap
        out: list[K] = []
        seen: set[K] = set()
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            due_at, _, key = heapq.heappop(heap)
            if key not in seen and self._due_of(key) == due_at:
                out.append(key)
                seen.add(key)
        for key in out:
            self.push(key, self._due_of(key))
        return out

    def earliest(self, live: int) -> datetime | None:
        """The earliest due time of any key (None: none); `live` is how many timers exist, so a
        heap grown far beyond them is rebuilt."""
        heap = self._heap
        if len(heap) > 2 * live + 1024:
            self.rebuild((k, self._due_of(k)) for k in {k for _, _, k in heap})
            heap = self._heap
        while heap:
            due_at, _, key = heap[0]
            if self._due_of(key) == due_at:
                return due_at
            heapq.heappop(heap)  # moved on or gone since it was pushed
        return None
