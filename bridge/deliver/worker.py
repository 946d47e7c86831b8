"""The outbox worker: claim due deliveries, send them, record each attempt with its retry decision.

Durability lives in the store: a claim is a lease (next_attempt_at pushed forward), never a lock held
across a send, so a crash mid-send just lets the lease expire and the delivery goes out again with the
same webhook-id. The loop waits on events, not polls: new work (`notify`), the next due time
(`clock.sleep`), or stop.

Per notification the store is touched twice, both batched: claims take a batch of due deliveries in
one transaction, and attempts that finish while a write is in progress are recorded together in the
next one (group commit, `AttemptLog`), so a burst costs a few fsyncs per batch, not two per delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from bridge import errors
from bridge.channels.base import Channel, SendResult
from bridge.clock import Clock
from bridge.deliver.breaker import Breakers
from bridge.deliver.ratelimit import RateLimit
from bridge.deliver.retry import RetryPolicy
from bridge.logs import scrub
from bridge.metrics import Metrics
from bridge.model import Attempt, Delivery, DeliveryStatus
from bridge.store.base import AttemptOutcome, Store

log = structlog.get_logger(__name__)

SHARED_POLL_S = 1.0  # a replica's outbox look-up when no wake-up can come (README "Running several replicas")

STORE_BACKOFF_MAX_S = 60.0


class AttemptLog:
    """Group commit of attempt records, written in the background by one writer task at a time.

    A send frees its slot as soon as the receiver has answered; its outcome joins the queue, and
    every outcome queued while a write is in progress goes into the next one (one transaction).
    Until then the delivery stays leased, so nobody sends it again; a crash before the write lets
    the lease run out and it goes out again with the same webhook-id (at least once). `flush`
    waits until everything queued so far is written: the worker flushes before it reports idle
    or stops.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._queue: list[AttemptOutcome] = []
        self._writer: asyncio.Task[None] | None = None

    def add(self, outcome: AttemptOutcome) -> None:
        self._queue.append(outcome)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="delivery:attempts")

    async def flush(self) -> None:
        while self._writer is not None:
            # Shielded: a caller cut short (drain timeout) must not cancel a write half done.
            await asyncio.shield(self._writer)

    async def _write(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    missing = await self._store.record_attempts(batch)
                except Exception as exc:  # a store error (or a store closed under us) must not be silent
                    missing, error = {o.attempt.delivery_id for o in batch}, str(exc)
                else:
                    error = "no such delivery"
                for delivery_id in missing:
                    # The lease expires and the delivery is sent again (same webhook-id): at least once.
                    log.error("delivery.record_failed", delivery_id=delivery_id, error=error)
        finally:
            self._writer = None


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
        self._attempts = AttemptLog(store)
        self._wake = asyncio.Event()
        self._stirs: set[asyncio.Event] = set()  # one per running _pump, set by notify
        self._in_flight: set[asyncio.Task[None]] = set()
        self._sending: set[str] = set()  # ids of the deliveries in flight, never sent twice at once
        self._missing_logged: set[str] = set()
        self._disabled_told: set[str] = set()
        self.breakers = breakers or Breakers()
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
        if not getattr(channel, "disabled", False):
            return False
        channel.disabled = False  # type: ignore[attr-defined]  # checked just above; not in the Protocol
        self.breakers.circuits.pop(name, None)
        self._disabled_told.discard(name)
        log.warning("channel.enabled", channel=name, by=by)
        await self._channel_health(name, channel)
        self.notify()
        return True

    async def _channel_health(self, name: str, channel: Channel) -> None:
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

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; then finish the sends in flight and return."""
        failures = 0
        while not stop.is_set():
            self._wake.clear()
            try:
                await self._pump(stop)
                due = await self._store.next_due_at()
                failures = 0
            except errors.StoreError as exc:
                # A locked or briefly unreachable store must not kill the bridge: back off and retry.
                failures += 1
                delay = min(STORE_BACKOFF_MAX_S, 2.0 ** (failures - 1))
                log.error("delivery.store_error", error=str(exc), retry_in_s=delay)
                await self._wait(stop, delay)
                continue
            if stop.is_set():
                break
            # On a store shared by replicas, work another replica committed (and could not send:
            # it died) wakes nobody here: look at the outbox again at least every SHARED_POLL_S.
            shared = self._store.shared
            if due is None:
                await self._wait(stop, SHARED_POLL_S if shared else None)
                continue
            delay = (due - self._clock.now()).total_seconds()
            if shared:
                delay = min(delay, SHARED_POLL_S)
            if delay > 0:
                await self._wait(stop, delay)
            # else: due already (time moved while we sent), so go round again without waiting

    async def run_until_idle(self) -> int:
        """Deliver everything due at `clock.now()` until nothing is due or in flight; returns attempts made.

        Also waits for sends that a concurrently running `run` has in flight, so "idle" means idle.
        """
        before = self.attempts_made
        never = asyncio.Event()
        while True:
            claimed = await self._pump(never)
            others = set(self._in_flight)
            if others:
                await asyncio.wait(others)
            elif claimed == 0:
                return self.attempts_made - before

    async def _wait(self, stop: asyncio.Event, delay: float | None) -> None:
        """Until new work, `delay` seconds of clock time (None: no timer), or stop; whichever is first."""
        waits: list[Awaitable[object]] = [self._wake.wait(), stop.wait()]
        if delay is not None:
            waits.append(self._clock.sleep(delay))
        tasks = [asyncio.ensure_future(w) for w in waits]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _pump(self, stop: asyncio.Event) -> int:
        """Claim and send due deliveries, at most `concurrency` at once, until none is due; returns claims.

        Only as many as there are free slots are claimed, so a claimed delivery starts sending at
        once and its lease only has to cover one send. New work (`notify`) is claimed while sends
        are in flight, not after them: a notification waits for a free slot, not for a busy batch.
        """
        claimed_total = 0
        mine: set[asyncio.Task[None]] = set()
        finished: list[asyncio.Task[None]] = []
        # Set by a finished send or by `notify`: O(1) per send, where asyncio.wait over every task in
        # flight would add and remove a callback on each of them every time one finishes.
        stir = asyncio.Event()

        def on_done(task: asyncio.Task[None]) -> None:
            finished.append(task)
            stir.set()

        more = True
        store_error: errors.StoreError | None = None
        self._stirs.add(stir)
        try:
            while True:
                if self._wake.is_set() and store_error is None:
                    self._wake.clear()
                    more = True
                free = min(self._batch, self._concurrency - len(mine))
                enough = free >= min(self._min_claim, self._batch) or not mine
                if more and free > 0 and enough and not stop.is_set():
                    try:
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
                            continue
                        self._sending.add(delivery.id)
                        task = asyncio.create_task(self._deliver(delivery), name=f"delivery:{delivery.id}")
                        mine.add(task)
                        self._in_flight.add(task)
                        task.add_done_callback(self._in_flight.discard)
                        task.add_done_callback(on_done)
                        task.add_done_callback(functools.partial(self._sent, delivery.id))
                if not mine:
                    if store_error is not None:
                        raise store_error
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
            await self._attempts.flush()  # idle or stopped means every attempt so far is recorded

    def _sent(self, delivery_id: str, _task: asyncio.Task[None]) -> None:
        self._sending.discard(delivery_id)

    async def _deliver(self, delivery: Delivery) -> None:
        channel = self._channels.get(delivery.channel)
        if channel is None:
            # Kept pending (the lease just runs out): a config fix and restart delivers it.
            if delivery.channel not in self._missing_logged:
                self._missing_logged.add(delivery.channel)
                log.warning("delivery.channel_missing", delivery_id=delivery.id, channel=delivery.channel)
            return
        at = self._clock.now()
        limit = self._limits.get(delivery.channel)
        if limit is not None and not limit.try_take(at):
            await self._defer(delivery, limit.defer_until(at))
            return
        if not self.breakers.allow(delivery.channel, at):
            # Circuit open: not sent, no attempt spent; the claim lease runs out and it is tried later.
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
        self._attempts.add(AttemptOutcome(attempt=attempt, status=status, next_attempt_at=next_at))

    async def _defer(self, delivery: Delivery, until: datetime) -> None:
        """Over the channel's rate: back in the outbox, due at its turn, no attempt spent."""
        try:
            await self._store.defer([(delivery.id, until)])
        except errors.StoreError as exc:  # the lease runs out instead, and the limit defers it again
            log.error("delivery.defer_failed", delivery_id=delivery.id, error=str(exc))
            return
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
