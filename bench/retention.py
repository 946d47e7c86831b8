"""Retention keeps the store bounded (#14): a SQLite store takes `--per-day` notifications a day (each
an event, a delivery, an attempt and two traces) for `--days` simulated days, with the pruner run
once a simulated hour, as the running bridge would; rows, file size and the longest single delete
(what a poll could wait behind) are printed per day.

    .venv/bin/python bench/retention.py --per-day 10000 --days 8 --events 3d --traces 1d
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bridge import logs
from bridge.clock import ManualClock
from bridge.config.models import RetentionConfig, parse_duration
from bridge.model import (
    Attempt,
    Change,
    Check,
    Delivery,
    Event,
    PollResult,
    ResourceKey,
    Snapshot,
    Trace,
    delivery_id,
    event_id,
)
from bridge.store.base import AttemptOutcome
from bridge.store.retention import Pruner
from bridge.store.sqlite import SqliteStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def result(n: int, at: datetime) -> PollResult:
    key = ResourceKey(source="podero.wallbox", provider="podero", resource_id=f"wb-{n % 250_000}")
    change = Change(field="is_charging", old=False, new=True)
    evt = Event(
        id=event_id("charging-started", key, n, at),
        rule_id="charging-started",
        type="wallbox.charging_started",
        status="firing",
        severity="info",
        key=key,
        sequence=n,
        changes=(change,),
        state={"is_charging": True, "charge_rate_w": 7400.0},
        occurred_at=at,
    )
    d = Delivery(
        id=delivery_id(evt.id, "partner"),
        event_id=evt.id,
        channel="partner",
        body=b'{"type":"wallbox.charging_started","data":{}}' * 4,
        next_attempt_at=at,
        created_at=at,
    )
    check = Check(name="to", want=True, got=True, ok=True)
    traces = tuple(
        Trace(rule_id=r, key=key, at=at, trigger="changed", changes=(change,), checks=(check,), outcome=o)
        for r, o in (("charging-started", "sent"), ("charging-stopped", "no-match"))
    )
    snap = Snapshot(key=key, state=evt.state, digest=str(n), sequence=n, updated_at=at)
    return PollResult(snapshot=snap, events=(evt,), deliveries=(d,), traces=traces)


async def run(
    per_day: int, days: int, cfg: RetentionConfig
) -> list[tuple[int, int, int, int, int, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        store = SqliteStore(path, synchronous="NORMAL")
        await store.open()
        clock = ManualClock(T0)
        pruner = Pruner(store, cfg, clock=clock)
        original = store.prune
        longest = 0.0

        async def timed(*args, **kw):  # type: ignore[no-untyped-def]
            nonlocal longest
            started = time.perf_counter()
            n = await original(*args, **kw)
            longest = max(longest, time.perf_counter() - started)
            return n

        store.prune = timed  # type: ignore[method-assign]
        per_hour = per_day // 24
        n = 0
        for day in range(days):
            longest = 0.0
            for _hour in range(24):
                batch = [result(n + i, clock.now()) for i in range(per_hour)]
                n += per_hour
                for chunk in range(0, len(batch), 500):
                    part = batch[chunk : chunk + 500]
                    await store.commit(part)
                    await store.record_attempts(
                        [
                            AttemptOutcome(
                                attempt=Attempt(
                                    delivery_id=r.deliveries[0].id,
                                    number=1,
                                    at=clock.now(),
                                    ok=True,
                                    status_code=204,
                                ),
                                status="delivered",
                                next_attempt_at=None,
                            )
                            for r in part
                        ]
                    )
                clock.advance(timedelta(hours=1))
                await pruner.run_once()
            c = await store.counts()
            size = sum(p.stat().st_size for p in Path(tmp).glob("bench.db*")) / 1e6
            rows.append((day + 1, c.events, c.deliveries, c.attempts, c.traces, size, longest * 1000))
        await store.close()
    return rows


def main(argv: list[str] | None = None) -> list[tuple[int, int, int, int, int, float, float]]:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--per-day", type=int, default=2400)
    p.add_argument("--days", type=int, default=5)
    p.add_argument("--events", default="3d")
    p.add_argument("--traces", default="1d")
    p.add_argument("--batch", type=int, default=1000)
    args = p.parse_args(argv)
    logs.configure(level="warning", fmt="console")
    age = parse_duration(args.events)
    cfg = RetentionConfig(events=age, deliveries=age, traces=parse_duration(args.traces), batch=args.batch)
    rows = asyncio.run(run(args.per_day, args.days, cfg))
    print("day  events  deliveries  attempts   traces  file MB  longest delete ms")
    for day, e, d, a, t, mb, ms in rows:
        print(f"{day:>3} {e:>7} {d:>11} {a:>9} {t:>8} {mb:>8.1f} {ms:>18.1f}")
    return rows


if __name__ == "__main__":
    main()
