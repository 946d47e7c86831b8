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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from bridge import errors
from bridge.channels.base import Channel, SendResult
from bridge.clock import Clock
from bridge.deliver.attempts import AttemptLog
from bridge.deliver.breaker import Breakers
from bridge.deliver.fallback import FallbackRouter
from bridge.deliver.handoff import FreshLease, lease_fresh
from bridge.deliver.ratelimit import RateLimit
from bridge.deliver.retry import RetryPolicy
from bridge.deliver.shared_channels import SharedChannels
from bridge.logs import scrub
from bridge.metrics import Metrics
from bridge.model import Attempt, Delivery, DeliveryStatus, PollResult
from bridge.store.base import AttemptOutcome, Store

log = structlog.get_logger(__name__)

SHARED_POLL_S = 1.0  # a replica's outbox look-up when no wake-up can come (README "Running several replicas")

STORE_BACKOFF_MAX_S = 60.0


class DeliveryWorker:
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

    def channel_state(self, name: str) -> dict[str, Any]:
        """The `bridge.channel` state of one channel (what rules and the API see)."""
        c = self.breakers.get(name)
        channel = self._channels.get(name)
        disabled = bool(getattr(channel, "disabled", False))
        return {
            "channel": name,
            "status": "disabled"
            if disabled
            else {"closed": "ok", "open": "paused", "half_open": "probing"}[c.state],
            "consecutive_failures": c.consecutive_failures,
            "last_error": c.last_error,
            "paused_until": c.open_until.isoformat() if c.open_until and c.state == "open" else None,
            "fallback_to": self._falling_back.get(name),
        }

    @property
    def channel_names(self) -> list[str]:
        return list(self._channels)

    def disabled_channels(self) -> dict[str, str]:
        """Channels disabled by a 410 Gone → why: a replay to them is refused (bridge/deliver/replay.py)."""
        return {
            name: self.breakers.get(name).last_error or "the receiver answered 410 Gone"
            for name, channel in self._channels.items()
            if getattr(channel, "disabled", False)
        }

    async def enable_channel(self, name: str, *, by: str) -> bool:
        """Re-enable a channel a 410 disabled: the operator's explicit act once the receiver is fixed.
        Its circuit starts closed; returns False when it was not disabled (nothing to do)."""
        channel = self._channels[name]
        await self._refresh_shared(force=True)  # disabled by another replica: enabled on all of them
        if not getattr(channel, "disabled", False):
            return False
        channel.disabled = False  # type: ignore[attr-defined]  # checked just above; not in the Protocol
        self.breakers.circuits.pop(name, None)
        self._disabled_told.discard(name)
        log.warning("channel.enabled", channel=name, by=by)
        await self._channel_health(name, channel)
        self.notify()
        return True

    async def refresh_channels(self) -> None:
        """Adopt now the channel states other replicas stored (a worker pass does it once a second)."""
        await self._refresh_shared(force=True)

    async def _refresh_shared(self, *, force: bool = False) -> None:
        if self.shared_channels is not None:
            await self.shared_channels.refresh(
                self._channels, self.breakers, self._disabled_told, force=force
            )

    async def _channel_health(self, name: str, channel: Channel) -> None:
        if self.shared_channels is not None:
            self.shared_channels.changed_here(name, self._clock.now())
        state = self.channel_state(name)
        if state["status"] == "disabled":
            self._disabled_told.add(name)
        if state["status"] == "ok":
            log.info("channel.health", **state)
        else:
            log.warning("channel.health", **state)
        if self._on_health is not None:
            try:
                await self._on_health(name, state)
            except errors.BridgeError as exc:  # telling ops must never stop a delivery
                log.error("channel.health_not_recorded", channel=name, error=str(exc))

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

    async def _deliver(self, delivery: Delivery) -> None:
        channel = self._channels.get(delivery.channel)
        if channel is None:
            # Kept pending (the lease just runs out): a config fix and restart delivers it.
            if delivery.channel not in self._missing_logged:
                self._missing_logged.add(delivery.channel)
                log.warning("delivery.channel_missing", delivery_id=delivery.id, channel=delivery.channel)
            self._due_again(delivery.next_attempt_at)
            return
        at = self._clock.now()
        limit = self._limits.get(delivery.channel)
        if limit is not None and not limit.try_take(at):
            await self._defer(delivery, limit.defer_until(at))
            return
        if not self.breakers.allow(delivery.channel, at):
            # Circuit open: not sent, no attempt spent; the claim lease runs out and it is tried later.
            self._due_again(delivery.next_attempt_at)
            return
        try:
            result = await channel.send(delivery)
        except Exception as exc:  # a channel must not raise; if one does, it is still an attempt
            log.exception("delivery.channel_raised", delivery_id=delivery.id, channel=delivery.channel)
            result = SendResult(ok=False, error=f"channel raised {type(exc).__name__}")
        result = _scrubbed(result)  # a receiver may quote credentials back; none may be stored or logged
        # A permanent rejection is about this message, not the receiver's health.
        changed = self.breakers.record(
            delivery.channel,
            ok=result.ok,
            counts=not result.permanent,
            now=self._clock.now(),
            error=result.error,
        )
        if changed or (getattr(channel, "disabled", False) and delivery.channel not in self._disabled_told):
            await self._channel_health(delivery.channel, channel)
        number = delivery.attempts + 1
        status: DeliveryStatus
        next_at: datetime | None
        if result.ok:
            status, next_at = "delivered", None
        else:
            decision = self._policies.get(delivery.channel, self._policy).decide(
                attempts_made=number,
                now=self._clock.now(),
                retry_after=result.retry_after,
                permanent=result.permanent,
            )
            status = "dead" if decision.dead else "pending"
            next_at = decision.next_attempt_at
            if next_at is not None:
                self._due_again(next_at)
        fallback = None
        if status == "dead" and self._fallback is not None:
            fallback = await self._fallback_for(delivery, channel, result.error)
        elif result.ok and self._falling_back.pop(delivery.channel, None) is not None:
            await self._channel_health(delivery.channel, channel)  # delivering again: no fallback now
        attempt = Attempt(
            delivery_id=delivery.id,
            number=number,
            at=at,
            ok=result.ok,
            status_code=result.status_code,
            latency_ms=result.latency_ms,
            error=result.error,
            response_excerpt=result.response_excerpt,
        )
        self.attempts_made += 1
        if self._metrics is not None:
            self._metrics.delivery_attempt(delivery.channel, status, result.latency_ms)
        log_fn = log.info if result.ok or status == "pending" else log.warning
        log_fn(
            "delivery.attempt",
            delivery_id=delivery.id,
            channel=delivery.channel,
            attempt=number,
            ok=result.ok,
            status_code=result.status_code,
            latency_ms=round(result.latency_ms, 1),
            outcome=status,
            **({"error": result.error} if result.error else {}),
            **({"next_attempt_at": next_at.isoformat()} if next_at else {}),
        )
        self._attempts.add(
            AttemptOutcome(
                attempt=attempt,
                status=status,
                next_attempt_at=next_at,
                fallback=fallback,
                claim_token=self._token(delivery),
            )
        )

    def _token(self, delivery: Delivery) -> int:
        """The fencing token this worker holds for `delivery` now (the latest of its claims)."""
        return self._reclaimed.get(delivery.id, delivery.claim_token)

    async def _fallback_for(self, delivery: Delivery, channel: Channel, error: str | None) -> Delivery | None:
        """The dead letter's copy for the channel's fallback; the first one of a spell is a
        `bridge.channel` change (`fallback_to`)."""
        if self._fallback is None:
            return None
        try:
            copy = await self._fallback.copy(delivery, error=error, now=self._clock.now())
        except errors.StoreError as exc:  # the dead letter stays replayable; only the copy is missing
            log.error(
                "channel.fallback_failed", delivery_id=delivery.id, channel=delivery.channel, error=str(exc)
            )
            return None
        if copy is None:
            return None
        log.warning(
            "channel.fallback",
            delivery_id=delivery.id,
            channel=delivery.channel,
            fallback=copy.channel,
            fallback_delivery_id=copy.id,
        )
        if self._falling_back.get(delivery.channel) != copy.channel:
            self._falling_back[delivery.channel] = copy.channel
            await self._channel_health(delivery.channel, channel)
        return copy

    async def _defer(self, delivery: Delivery, until: datetime) -> None:
        """Over the channel's rate: back in the outbox, due at its turn, no attempt spent."""
        try:
            await self._store.defer([(delivery.id, until)], tokens={delivery.id: self._token(delivery)})
        except errors.StoreError as exc:  # the lease runs out instead, and the limit defers it again
            log.error("delivery.defer_failed", delivery_id=delivery.id, error=str(exc))
            self._due_again(delivery.next_attempt_at)
            return
        self._due_again(until)
        log.debug(
            "delivery.rate_limited",
            delivery_id=delivery.id,
            channel=delivery.channel,
            until=until.isoformat(),
        )


def _scrubbed(result: SendResult) -> SendResult:
    if result.error is None and not result.response_excerpt:
        return result
    return replace(
        result,
        error=None if result.error is None else scrub(result.error),
        response_excerpt=None if result.response_excerpt is None else scrub(result.response_excerpt),
    )


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else min(a, b)
