"""The delivery worker's channel states: the `bridge.channel` state of each channel (what rules, the
API and the status page see), which channels a 410 disabled, re-enabling one, and adopting what other
replicas stored (`shared_channels.py`). Mixed into `worker.DeliveryWorker`, which sets the
attributes declared here in its `__init__` and provides `notify`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from bridge import errors
from bridge.channels.base import Channel
from bridge.clock import Clock
from bridge.deliver.breaker import Breakers
from bridge.deliver.shared_channels import SharedChannels

log = structlog.get_logger("bridge.deliver.worker")


class ChannelStates:
    _channels: Mapping[str, Channel]
    _clock: Clock
    _disabled_told: set[str]
    _falling_back: dict[str, str]
    _on_health: Callable[[str, dict[str, Any]], Awaitable[None]] | None
    breakers: Breakers
    shared_channels: SharedChannels | None

    def notify(self) -> None:
        raise NotImplementedError

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
