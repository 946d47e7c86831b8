"""Where the delivery side's latency goes: bench/latency.py with four stamps per webhook.

Runs bench/latency.py unchanged (same arguments) with `DeliveryWorker.notify`, `SqliteStore.claim_due`
and `WebhookChannel.send` wrapped on their classes to stamp `time.monotonic_ns()`; each webhook is
matched by `wallbox:new value` to its claim, its send and its arrival at the receiver, and to the
last `notify` before its claim. A delivery handed over from the commit (#16) is stamped at
`DeliveryWorker.hand_over` instead: its notify and claim parts are 0. Prints, per part, p50 / p90 / p99 in ms:

    notify -> claim starts -> claim returns -> its send starts -> arrival at the receiver

    .venv/bin/python bench/latency_split.py --rate 200 --per-poll 10 --wallboxes 20 --seconds 4 \\
        --repeat 1 --synchronous NORMAL
"""

from __future__ import annotations

import bisect
import collections
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import latency
from delivery import Receiver

from bridge.channels.base import SendResult
from bridge.channels.webhook import WebhookChannel
from bridge.deliver.worker import DeliveryWorker
from bridge.model import Delivery
from bridge.store.sqlite import SqliteStore

PARTS = ("notify -> claim starts", "claim (one hop)", "claimed -> send starts", "send starts -> arrival",
         "notify -> arrival")  # fmt: skip


def _key(delivery: Delivery) -> str:
    data = orjson.loads(delivery.body)["data"]
    return f"{data['resource_id']}:{data['changes'][0]['new']}"


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    stamps: dict[str, dict[str, int]] = collections.defaultdict(dict)
    notified: list[int] = []
    arrived: list[tuple[int, str]] = []
    real_notify, real_claim = DeliveryWorker.notify, SqliteStore.claim_due
    real_hand_over = DeliveryWorker.hand_over
    real_send, real_arrivals = WebhookChannel.send, Receiver.arrivals

    def notify(self: DeliveryWorker) -> None:
        notified.append(time.monotonic_ns())
        real_notify(self)

    async def claim_due(self: SqliteStore, now: datetime, *, limit: int, lease: timedelta) -> list[Delivery]:
        started = time.monotonic_ns()
        claimed = await real_claim(self, now, limit=limit, lease=lease)
        returned = time.monotonic_ns()
        for delivery in claimed:
            stamps[_key(delivery)].update(claim0=started, claim1=returned)
        return claimed

    def hand_over(self: DeliveryWorker, lease: Any, committed: Any) -> None:
        # A hand-over replaces both the notify and the claim (#16): those parts are 0 for its webhooks.
        at = time.monotonic_ns()
        notified.append(at)
        for r in committed:
            for delivery in r.deliveries:
                if delivery.id in lease.leased:
                    stamps[_key(delivery)].update(claim0=at, claim1=at)
        real_hand_over(self, lease, committed)

    async def send(self: WebhookChannel, delivery: Delivery) -> SendResult:
        stamps[_key(delivery)]["send0"] = time.monotonic_ns()
        return await real_send(self, delivery)

    async def arrivals(self: Receiver, http: Any) -> list[tuple[int, str]]:
        got = await real_arrivals(self, http)
        arrived.extend(got)
        return got

    DeliveryWorker.notify = notify  # type: ignore[method-assign]
    SqliteStore.claim_due = claim_due  # type: ignore[method-assign]
    DeliveryWorker.hand_over = hand_over  # type: ignore[method-assign]
    WebhookChannel.send = send  # type: ignore[method-assign]
    Receiver.arrivals = arrivals  # type: ignore[method-assign]
    try:
        latency.main(argv)
    finally:
        DeliveryWorker.notify, SqliteStore.claim_due = real_notify, real_claim  # type: ignore[method-assign]
        DeliveryWorker.hand_over = real_hand_over  # type: ignore[method-assign]
        WebhookChannel.send, Receiver.arrivals = real_send, real_arrivals  # type: ignore[method-assign]

    first: dict[str, int] = {}
    for at, key in arrived:
        first.setdefault(key, at)
    notified.sort()
    parts: dict[str, list[float]] = {p: [] for p in PARTS}
    for key, t in stamps.items():
        j = bisect.bisect_right(notified, t.get("claim0", 0)) - 1
        if key not in first or "send0" not in t or "claim0" not in t or j < 0:
            continue  # the baseline poll's, or not sent (should not happen)
        steps = (t["claim0"] - notified[j], t["claim1"] - t["claim0"], t["send0"] - t["claim1"],
                 first[key] - t["send0"], first[key] - notified[j])  # fmt: skip
        for part, ns in zip(PARTS, steps, strict=True):
            parts[part].append(ns / 1e6)
    for part, values in parts.items():
        values.sort()
        if values:
            q = [values[min(len(values) - 1, int(p * len(values)))] for p in (0.5, 0.9, 0.99)]
            print(f"{part:<24} p50 {q[0]:7.2f}  p90 {q[1]:7.2f}  p99 {q[2]:7.2f} ms  (n={len(values)})")
    return parts


if __name__ == "__main__":
    main()
