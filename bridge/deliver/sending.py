"""One delivery's send: the checks before it (channel configured, send rate, circuit), the send,
the retry decision, a dead letter's fallback copy, and the attempt handed to the attempt log
(`attempts.py`). Mixed into `worker.DeliveryWorker` (which claims and hands over what is sent here)
and sets the attributes declared here in its `__init__`.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

import structlog

from bridge import errors
from bridge.channels.base import Channel, SendResult
from bridge.deliver.attempts import AttemptLog
from bridge.deliver.channel_states import ChannelStates
from bridge.deliver.fallback import FallbackRouter
from bridge.deliver.ratelimit import RateLimit
from bridge.deliver.retry import RetryPolicy
from bridge.logs import scrub
from bridge.metrics import Metrics
from bridge.model import Attempt, Delivery, DeliveryStatus
from bridge.store.base import AttemptOutcome, Store

log = structlog.get_logger("bridge.deliver.worker")


class DeliverySends(ChannelStates):
    _store: Store
    _limits: dict[str, RateLimit]
    _policy: RetryPolicy
    _policies: dict[str, RetryPolicy]
    _fallback: FallbackRouter | None
    _attempts: AttemptLog
    _metrics: Metrics | None
    _missing_logged: set[str]
    _reclaimed: dict[str, int]
    attempts_made: int

    def _due_again(self, at: datetime) -> None:
        raise NotImplementedError

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
