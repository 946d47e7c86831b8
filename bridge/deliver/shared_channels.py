"""Channel state shared by replicas: a channel a 410 disabled, and a paused circuit, hold on all.

Each replica's worker keeps its channels' circuits in memory (bridge/deliver/breaker.py) and writes
every change as the channel's `bridge.channel` state (a snapshot, what rules and the status page
see). On a store shared by replicas, the worker reads those states again before it sends (at most
once a second of clock time) and adopts what another replica found:

- `disabled` (a 410 Gone): disabled here too, so no replica hammers a receiver that said "gone";
- `paused` (another replica's circuit opened): this circuit opens until the same time, so the
  receiver gets its pause from every replica, then one probe per replica;
- `ok` while this replica's circuit is open, or its channel disabled: another replica's probe
  succeeded, or the operator re-enabled the channel on another replica (`POST
  /api/channels/{name}/enable` on any replica re-enables it everywhere).

What is adopted is not written back (it is the stored state already). A stored state no newer than
this replica's own last change of that channel is not adopted: it is what this replica changed
from (its own write may still be on its way). SQLite has no other writer: nothing to read.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableSet
from datetime import datetime, timedelta
from typing import Any

import structlog

from bridge.channels.base import Channel
from bridge.clock import Clock
from bridge.deliver.breaker import Breakers
from bridge.model import CHANNEL_PROVIDER, CHANNEL_SOURCE
from bridge.store.base import Store

log = structlog.get_logger("bridge.deliver.worker")

REFRESH_EVERY = timedelta(seconds=1)


class SharedChannels:
    def __init__(self, store: Store, clock: Clock, *, every: timedelta = REFRESH_EVERY) -> None:
        self._store = store
        self._clock = clock
        self._every = every
        self._last: datetime | None = None
        self._local: dict[str, datetime] = {}  # channel -> when this replica last changed its state
        self.adopted = 0  # changes another replica made that this one took over

    def changed_here(self, name: str, at: datetime) -> None:
        """This replica changed the channel's state at `at` (and writes it): older states are stale."""
        self._local[name] = at

    async def refresh(
        self,
        channels: Mapping[str, Channel],
        breakers: Breakers,
        told: MutableSet[str],
        *,
        force: bool = False,
    ) -> None:
        """Adopt the stored channel states that differ from this replica's (StoreError propagates:
        the worker backs off as for any store error)."""
        now = self._clock.now()
        if not force and self._last is not None and now - self._last < self._every:
            return
        self._last = now
        stored = await self._store.get_snapshots(CHANNEL_PROVIDER, CHANNEL_SOURCE)
        for name, channel in channels.items():
            snap = stored.get(name)
            if snap is None or snap.state is None:
                continue
            mine = self._local.get(name)
            if mine is not None and snap.updated_at <= mine:
                continue
            self._local[name] = snap.updated_at
            self._adopt(name, channel, snap.state, breakers, told, now)

    def _adopt(
        self,
        name: str,
        channel: Channel,
        state: Mapping[str, Any],
        breakers: Breakers,
        told: MutableSet[str],
        now: datetime,
    ) -> None:
        status = state.get("status")
        can_disable = hasattr(channel, "disabled")
        disabled_here = bool(getattr(channel, "disabled", False))
        circuit = breakers.get(name)
        if status == "disabled" and can_disable and not disabled_here:
            channel.disabled = True  # type: ignore[attr-defined]  # webhook-like channels only
            circuit.last_error = _text(state.get("last_error")) or circuit.last_error
            told.add(name)  # its `bridge.channel` change is told already, by the replica that saw it
            self._adopted("disabled", name)
        elif status != "disabled" and disabled_here:
            channel.disabled = False  # type: ignore[attr-defined]
            breakers.circuits.pop(name, None)
            told.discard(name)
            self._adopted("enabled", name)
        elif status == "paused" and circuit.state == "closed":
            until = _when(state.get("paused_until"))
            if until is None or until <= now:
                return
            circuit.state, circuit.open_until = "open", until
            circuit.consecutive_failures = max(
                circuit.consecutive_failures, _int(state.get("consecutive_failures"))
            )
            circuit.last_error = _text(state.get("last_error")) or circuit.last_error
            circuit.cooldown = max(circuit.cooldown, breakers.policy.cooldown)
            self._adopted("paused", name)
        elif status == "ok" and circuit.state != "closed":
            circuit.state, circuit.open_until, circuit.consecutive_failures = "closed", None, 0
            circuit.cooldown, circuit.last_error = timedelta(0), None
            self._adopted("closed", name)

    def _adopted(self, what: str, name: str) -> None:
        self.adopted += 1
        log.info("channel.shared_state", channel=name, adopted=what)


def _when(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
