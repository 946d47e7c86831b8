"""Replay: one implementation behind the API, the CLI and the status page (#18).

A delivered, dead or suppressed delivery becomes pending again with its id (the `webhook-id` /
`Message-ID`) and bytes unchanged and a fresh retry schedule (`Store.replay`).

A delivery whose channel is **disabled** (its receiver answered 410 Gone) is refused, never queued:
it would be a dead letter again at once. Re-enabling is the operator's own act, separate from the
replay, because a 410 means "this URL is gone": fix the receiver (or the channel's `url`), then
`POST /api/channels/{name}/enable`, the status page's Enable button or `wattbridge channels enable`,
then replay. The refusal says exactly that (`ReplayRefused.reason == "channel_disabled"`; the API
answers 409).

Who knows a channel is disabled: the running service knows it in memory (`DeliveryWorker`); the CLI,
a process of its own, reads the `bridge.channel` state the service stores (`disabled_in_store`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import structlog

from bridge import errors
from bridge.model import CHANNEL_SOURCE, Delivery, ResourceKey
from bridge.store.base import Store

log = structlog.get_logger(__name__)

REPLAYABLE = ("delivered", "dead", "suppressed")


def how_to_enable(channel: str) -> str:
    return (
        f"channel {channel!r} is disabled: its receiver answered 410 Gone, so a replay would be a dead "
        f"letter again at once. Fix the receiver (or the channel's url), re-enable the channel with "
        f"POST /api/channels/{channel}/enable (or the status page's Enable button; a restart keeps it "
        "disabled), "
        "then replay again"
    )


async def disabled_in_store(store: Store, channels: Sequence[str]) -> dict[str, str]:
    """Channels whose stored `bridge.channel` state says disabled → why (for a separate process)."""
    out: dict[str, str] = {}
    for name in dict.fromkeys(channels):
        snap = await store.get_snapshot(
            ResourceKey(source=CHANNEL_SOURCE, provider="bridge", resource_id=name)
        )
        if snap is not None and snap.state is not None and snap.state.get("status") == "disabled":
            out[name] = str(snap.state.get("last_error") or "the receiver answered 410 Gone")
    return out


async def replay(
    store: Store,
    ids: Sequence[str],
    now: datetime,
    *,
    disabled: Mapping[str, str],
    by: str,
) -> int:
    """Make the deliveries `ids` pending again, or refuse all of them with a ReplayRefused saying why.

    `disabled`: channel → why, for the channels disabled now; `by` names the caller in the log (api,
    cli, status_page). Returns how many became pending (fewer when one moved on meanwhile).
    """
    found: list[Delivery] = []
    missing: list[str] = []
    for delivery_id in dict.fromkeys(ids):
        d = await store.get_delivery(delivery_id)
        if d is None:
            missing.append(delivery_id)
        else:
            found.append(d)
    if missing:
        raise errors.ReplayRefused(f"no such delivery: {', '.join(missing)}", reason="not_found", ids=missing)
    return await replay_deliveries(store, found, now, disabled=disabled, by=by)


async def replay_deliveries(
    store: Store,
    deliveries: Sequence[Delivery],
    now: datetime,
    *,
    disabled: Mapping[str, str],
    by: str,
) -> int:
    """`replay` for deliveries already read (the CLI's `--channel C --since T` lists thousands)."""
    stuck = [d for d in deliveries if d.status not in REPLAYABLE]
    if stuck:
        d = stuck[0]
        raise errors.ReplayRefused(
            f"delivery {d.id!r} is {d.status}; only {', '.join(REPLAYABLE)} deliveries can be replayed",
            reason="not_replayable",
            ids=[s.id for s in stuck],
        )
    blocked = [d for d in deliveries if d.channel in disabled]
    if blocked:
        channel = blocked[0].channel
        log.warning(
            "delivery.replay_refused",
            by=by,
            channel=channel,
            deliveries=len(blocked),
            reason="channel_disabled",
        )
        raise errors.ReplayRefused(
            how_to_enable(channel), reason="channel_disabled", ids=[d.id for d in blocked], channel=channel
        )
    replayed = await store.replay([d.id for d in deliveries], now)
    for d in deliveries[:20]:  # the first few by id; the count says the rest
        log.info("delivery.replay_requested", by=by, delivery_id=d.id, channel=d.channel, was=d.status)
    if len(deliveries) > 20 or replayed != len(deliveries):
        log.info("delivery.replayed", by=by, asked=len(deliveries), replayed=replayed)
    return replayed
