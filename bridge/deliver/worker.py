"""The outbox worker: claim due deliveries, send them, record each attempt with its retry decision.

Durability lives in the store: a claim is a lease (next_attempt_at pushed forward), never a lock held
across a send, so a crash mid-send just lets the lease expire and the delivery goes out again with the
same webhook-id. The loop waits on events, not polls: new work (`notify`), the next due time
(`clock.sleep`), or stop.

Fresh work skips the claim: the poller asks `lease_fresh` for its results before committing them,
so their deliveries are written already leased to this worker, and `hand_over` gives the committed
ones to the sender in memory (the row stays the truth: a crash lets the lease run out, and a claim
then sends them with the same webhook-id and bytes). Claims remain for retries, replays, whatever a
hand-over had no room for, and after a restart. Attempts that finish while a write is in progress
are recorded together in the next one (group commit, `AttemptLog`), at most one write per 10 ms in
a steady stream; a claim first waits for the records of this worker's attempts.

The worker's channel states are `channel_states.py`'s, and one delivery's send is `sending.py`'s (both
mixed in).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from bridge import errors
from bridge.channels.base import Channel
from bridge.clock import Clock
from bridge.deliver.attempts import AttemptLog
from bridge.deliver.breaker import Breakers
from bridge.deliver.fallback import FallbackRouter
from bridge.deliver.handoff import FreshLease, lease_fresh
from bridge.deliver.ratelimit import RateLimit
from bridge.deliver.retry import RetryPolicy
from bridge.deliver.sending import DeliverySends
from bridge.deliver.shared_channels import SharedChannels
from bridge.metrics import Metrics
from bridge.model import Delivery, PollResult
from bridge.store.base import Store

log = structlog.get_logger(__name__)

SHARED_POLL_S = 1.0  # a replica's outbox look-up when no wake-up can come (README "Running several replicas")

STORE_BACKOFF_MAX_S = 60.0


class DeliveryWorker(DeliverySends):
    """Sends the outbox. One per process; `run` is its loop, `run_until_idle` a burst for tests/dry runs."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        *,
        clock: Clock,
        policy: RetryPolicy | None = None,
        policies: Mapping[str, RetryPolicy] | None = None,
        batch: int = 50,
        lease: timedelta = timedelta(seconds=60),
        concurrency: int = 64,
        breakers: Breakers | None = None,
        on_health: Callable[[str, dict[str, Any]], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        fallback: FallbackRouter | None = None,
        shared_poll: float = SHARED_POLL_S,
    ) -> None:
        if batch < 1 or concurrency < 1:
            raise ValueError("batch and concurrency must be at least 1")
        self._store = store
        self._channels = channels
        self._clock = clock
        self._policy = policy or RetryPolicy()
        self._policies = dict(policies or {})  # per-channel schedules; others use `policy`
        self._limits = dict(limits or {})  # per-channel send rates; others are unlimited
        self._batch = batch
        self._lease = lease
        self._concurrency = self.concurrency = concurrency
        # Claim when at least this many slots are free (or nothing is in flight): in a burst, sends
        # finish one by one, and a claim per free slot would cost a transaction per delivery.
        self._min_claim = max(1, concurrency // 4)
        self._attempts = AttemptLog(store, metrics)
        self._shared_poll = shared_poll  # outbox look-ups on a shared store, whatever wakes us
        self._wake = asyncio.Event()  # the store holds due work: claim
        # Committed deliveries leased to this worker (`hand_over`), sent without a claim; bounded so
        # that what waits here goes out well within its lease.
        self._fresh: deque[Delivery] = deque()
        self._fresh_ready = asyncio.Event()
        self._fresh_room = 2 * concurrency
        self._reserved = 0  # leased by `lease_fresh`, not yet committed or given up
        self._soonest: datetime | None = None  # the earliest time a delivery this worker saw is due again
        self._waiter: asyncio.Future[None] | None = None  # what an idle `run` awaits (see `_wait`)
        self._stirs: set[asyncio.Event] = set()  # one per running _pump, set by notify
        self._in_flight: dict[asyncio.Task[None], str] = {}  # sends in flight -> their delivery ids
        self._sending: set[str] = set()  # ids of the deliveries in flight, never sent twice at once
        # In flight here and claimed again by this worker meanwhile (its lease ran out mid-send):
        # the send records under the newer claim's token, else its own record would be fenced out.
        self._reclaimed: dict[str, int] = {}
        self._missing_logged: set[str] = set()
        self._disabled_told: set[str] = set()
        self._fallback = fallback
        # Channels whose dead letters went to their fallback since their last successful send: the
        # `bridge.channel` state says so (`fallback_to`), so a rule can tell ops.
        self._falling_back: dict[str, str] = {}
        self.breakers = breakers or Breakers()
        # Replicas: a channel another replica disabled or paused is disabled or paused here too.
        self.shared_channels = SharedChannels(store, clock) if store.shared else None
        self._on_health = on_health
        self._metrics = metrics
        self.attempts_made = 0  # attempts since start, for metrics and run_until_idle

    def notify(self) -> None:
        """New deliveries were committed: look now instead of at the next due time."""
        self._wake.set()
        for stir in self._stirs:
            stir.set()
        self._kick()

    def notified_by_store(self) -> None:
        """Another replica committed due deliveries (PostgreSQL NOTIFY): claim now, not at the next poll."""
        if self._metrics is not None:
            self._metrics.outbox_wakeups += 1
        self.notify()

    def lease_fresh(self, results: Sequence[PollResult]) -> FreshLease:
        """Before a commit: lease the fresh deliveries of `results` to this worker, as many as it has
        room for. Commit `lease.results` (the deliveries are written leased, so no claim takes them),
        then call `hand_over` with what was committed, whatever happened."""
        room = self._fresh_room - len(self._fresh) - len(self._sending) - self._reserved
        now = self._clock.now()
        lease = lease_fresh(results, now=now, until=now + self._lease, room=room, channels=self._channels)
        self._reserved += len(lease.leased)
        return lease

    def hand_over(self, lease: FreshLease, committed: Sequence[PollResult]) -> None:
        """After a commit: send the committed deliveries `lease` holds at once; any other due one the
        commit wrote is the store's to give (a claim). Deliveries leased but not committed are gone."""
        self._reserved -= len(lease.leased)
        claim = False
        for r in committed:
            for d in r.deliveries:
                if d.id in lease.leased:
                    self._fresh.append(d)
                elif d.status == "pending":
                    claim = True
        if claim:
            self.notify()
        elif self._fresh:
            self._fresh_ready.set()
            for stir in self._stirs:
                stir.set()
            self._kick()

    def _due_again(self, at: datetime) -> None:
        """A delivery this worker handled is due again at `at` (a retry, a lease left to run out)."""
        self._soonest = _earlier(self._soonest, at)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then finish the sends in flight and return."""
        stopper = asyncio.ensure_future(stop.wait())
        stopper.add_done_callback(self._kick)
        try:
            await self._run(stop)
        finally:
            stopper.cancel()
            await self._attempts.flush()  # stopped means every attempt so far is recorded
        await self._release_fresh()

    async def _run(self, stop: asyncio.Event) -> None:
        failures = 0
        claim = True  # at start, and whenever the store may hold due work this worker was not given
        due: datetime | None = None
        while not stop.is_set():
            self._wake.clear()
            self._fresh_ready.clear()
            self._soonest = None
            try:
                await self._pump(stop, claim=claim)
                if claim:
                    due = await self._store.next_due_at()
                failures = 0
            except errors.StoreError as exc:
                # A locked or briefly unreachable store must not kill the bridge: back off and retry.
                failures += 1
                delay = min(STORE_BACKOFF_MAX_S, 2.0 ** (failures - 1))
                log.error("delivery.store_error", error=str(exc), retry_in_s=delay)
                await self._wait(stop, delay)
                claim = True
                continue
            due = _earlier(due, self._soonest)  # what this pump left due again, if sooner
            claim = False
            if stop.is_set():
                break
            # On a store shared by replicas, work another replica committed may wake nobody here
            # (a NOTIFY lost with its connection, a dead replica's claims running out): look at the
            # outbox again at least every `shared_poll` seconds.
            shared = self._store.shared
            if due is None:
                await self._wait(stop, self._shared_poll if shared else None)
            else:
                delay = (due - self._clock.now()).total_seconds()
                if shared:
                    delay = min(delay, self._shared_poll)
                if delay > 0:
                    await self._wait(stop, delay)
                # due now (or time moved while we sent): claim, then ask the store again
                claim = self._clock.now() >= due
            # On a shared store another replica's work may be due whatever we know: claim after each wait.
            claim = claim or shared or self._wake.is_set()

    async def _release_fresh(self) -> None:
        """Stopping: fresh deliveries not started are due again now, not at the end of their lease."""
        if not self._fresh:
            return
        now = self._clock.now()
        fresh, self._fresh = list(self._fresh), deque()
        due = [(d.id, now) for d in fresh]
        try:
            await self._store.defer(due, tokens={d.id: d.claim_token for d in fresh})
        except errors.StoreError as exc:  # their leases run out instead: sent later, not lost
            log.error("delivery.release_failed", deliveries=len(due), error=str(exc))

    async def run_until_idle(self) -> int:
        """Deliver everything due at `clock.now()` until nothing is due or in flight; returns attempts made.

        Also waits for sends that a concurrently running `run` has in flight, so "idle" means idle.
        """
        before = self.attempts_made
        never = asyncio.Event()
        while True:
            claimed = await self._pump(never, settle=True)
            others = set(self._in_flight)
            if others:
                await asyncio.wait(others)
            elif claimed == 0:
                return self.attempts_made - before

    async def _wait(self, stop: asyncio.Event, delay: float | None) -> None:
        """Until new work, `delay` seconds of clock time (None: no timer), or stop; whichever is first.

        One future, resolved by `notify`, `hand_over`, the stop watcher of `run` or the timer: an idle
        worker is woken once per hand-over when paced, so this costs no tasks unless there is a timer.
        """
        if self._wake.is_set() or self._fresh_ready.is_set() or stop.is_set():
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        sleeper = None if delay is None else asyncio.ensure_future(self._clock.sleep(delay))
        if sleeper is not None:
            sleeper.add_done_callback(self._kick)
        try:
            await waiter
        finally:
            self._waiter = None
            if sleeper is not None and not sleeper.done():
                sleeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sleeper

    def _kick(self, _: object = None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _pump(self, stop: asyncio.Event, *, claim: bool = True, settle: bool = False) -> int:
        """Send handed-over deliveries and claim due ones (when `claim` or notified), at most
        `concurrency` at once, until none is left; returns how many were claimed or handed over.
        With `settle`, also waits until their attempts are recorded (otherwise the attempt log
        writes them within its window, or `run` does when it stops).

        Only as many as there are free slots are claimed, so a claimed delivery starts sending at
        once and its lease only has to cover one send. New work (`notify`) is claimed while sends
        are in flight, not after them: a notification waits for a free slot, not for a busy batch.
        """
        await self._refresh_shared()  # before anything is sent: what other replicas found out
        claimed_total = 0
        mine: set[asyncio.Task[None]] = set()
        finished: list[asyncio.Task[None]] = []
        # Set by a finished send or by `notify`: O(1) per send, where asyncio.wait over every task in
        # flight would add and remove a callback on each of them every time one finishes.
        stir = asyncio.Event()

        def on_done(task: asyncio.Task[None]) -> None:  # the one callback of each send
            done_id = self._in_flight.pop(task)
            self._sending.discard(done_id)
            self._reclaimed.pop(done_id, None)
            finished.append(task)
            stir.set()

        def start(delivery: Delivery) -> None:
            self._sending.add(delivery.id)
            task = asyncio.create_task(self._deliver(delivery), name=f"delivery:{delivery.id}")
            mine.add(task)
            self._in_flight[task] = delivery.id
            task.add_done_callback(on_done)

        more = claim
        idle = False  # returned normally (not cancelled, no error)
        store_error: errors.StoreError | None = None
        self._stirs.add(stir)
        try:
            while True:
                if self._wake.is_set() and store_error is None:
                    self._wake.clear()
                    more = True
                if self._fresh and len(mine) < self._concurrency and not stop.is_set():
                    # Handed over: leased to us at commit, no store trip. One whose lease is half
                    # gone (a stalled loop) is left to run out; a claim then sends it with a new one.
                    fresh_until = self._clock.now() + self._lease / 2
                    while self._fresh and len(mine) < self._concurrency:
                        delivery = self._fresh.popleft()
                        if delivery.id in self._sending or delivery.next_attempt_at < fresh_until:
                            self._due_again(delivery.next_attempt_at)
                            continue
                        claimed_total += 1
                        start(delivery)
                free = min(self._batch, self._concurrency - len(mine))
                enough = free >= min(self._min_claim, self._batch) or not mine
                if more and free > 0 and enough and not stop.is_set():
                    try:
                        # A claim must see every attempt this worker made: one still waiting in the
                        # attempt log's window would look due again once its lease is gone.
                        await self._attempts.flush()
                        now = self._clock.now()
                        claimed = await self._store.claim_due(now, limit=free, lease=self._lease)
                    except errors.StoreError as exc:
                        # Let the sends in flight finish (cancelling them would only cause duplicates).
                        store_error, claimed, more = exc, [], False
                    else:
                        more = len(claimed) == free
                    claimed_total += len(claimed)
                    for delivery in claimed:
                        if delivery.id in self._sending:
                            # Its lease ran out while this process still sends it (a slow send, a
                            # clock step): that send records the outcome; a second would duplicate it.
                            self._reclaimed[delivery.id] = delivery.claim_token
                            continue
                        start(delivery)
                if not mine:
                    if store_error is not None:
                        raise store_error
                    idle = True
                    return claimed_total
                stir.clear()
                if not finished:
                    await stir.wait()
                done, finished[:] = finished[:], []
                for task in done:
                    mine.discard(task)
                    task.result()  # a bug in _deliver surfaces here and stops the service loudly
        finally:
            self._stirs.discard(stir)
            # Only on cancellation (drain timeout) or a bug: leased deliveries go out after the lease.
            for task in mine:
                task.cancel()
            if mine:
                await asyncio.gather(*mine, return_exceptions=True)
            if settle or not idle:  # cut short: record what was sent before anything else happens
                await self._attempts.flush()


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)
