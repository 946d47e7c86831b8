"""The cost of `stale_after` timers at fleet scale (#14 items 1 and 9): a store holding `--resources`
wallbox snapshots (default 250,000, the fleet the store is sized for) and one stale rule, driven
through the poller's own code paths, on a ManualClock:

* **arm**: the first poll's reads, in slices of 500 as a poll commits them, arm one timer per
  resource (`stale_reads.after`, then `save_rule_states`);
* **poll**: a later poll's reads: nothing to arm (lazy timers), only the "unarmed?" check (and, for a
  rule without a `field`, the look for firing states a read resolves);
* **scan**: the timer loop's once-a-second due scan (`Evaluator.due_now`) with nothing due, and
  `Poller.tick()` with nothing due;
* **re-arm**: `stale_after` later every timer is due at once (the worst case: a fleet armed by one
  poll) and each resource has reported meanwhile, so one `tick()` moves every timer on: rows
  written (rule states and snapshot versions), events (none).

File size (db + WAL) after each phase. SQLite (synchronous NORMAL); PostgreSQL too when
WATTBRIDGE_TEST_PG is set (a schema of its own, dropped after).

    .venv/bin/python bench/stale.py --resources 250000 --repeat 3 [--no-field] [--store sqlite|postgres|both]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge import logs
from bridge.clock import ManualClock
from bridge.model import PollResult, ResourceKey, Snapshot
from bridge.poll import stale_reads
from bridge.poll.cycle import Poller
from bridge.poll.health import HealthBoard
from bridge.rules.engine import Rule, RuleSet
from bridge.store.sqlite import SqliteStore

T0 = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
SOURCE = "podero.wallbox"
PROVIDER = "podero"
FIELD = "current_state_last_updated_at"
SLICE = 500  # what a by-id poll commits together (bridge/poll/cycle.py SLICE)
STALE = timedelta(hours=6)


class _Book:
    """The poller only reads `current` from its rule book."""

    def __init__(self, rules: RuleSet) -> None:
        self.current = rules


def _rule(field: bool) -> Rule:
    return Rule(
        id="wallbox-quiet",
        description="",
        source=SOURCE,
        field=FIELD if field else None,
        event="changed",
        severity="warning",
        type="wallbox.quiet",
        channels=("ops",),
        file="bench",
        line=None,
        stale_after=STALE,
        resolve=True,
    )


def _state(i: int, at: datetime) -> dict[str, Any]:
    stamp = at.isoformat().replace("+00:00", "Z")
    return {"id": f"wb-{i:06d}", "connection": "online", "is_charging": False, FIELD: stamp}


def _snapshots(n: int, at: datetime, version: int) -> list[PollResult]:
    out = []
    for i in range(n):
        key = ResourceKey(source=SOURCE, provider=PROVIDER, resource_id=f"wb-{i:06d}")
        snap = Snapshot(
            key=key, state=_state(i, at), digest=f"d{i}-{version}", sequence=0, updated_at=at, version=version
        )
        out.append(PollResult(snapshot=snap))
    return out


class _TimedLock(asyncio.Lock):
    """The poller's lock, timing each hold: the longest is what a poll could wait behind."""

    def __init__(self) -> None:
        super().__init__()
        self.longest = 0.0
        self._since = 0.0

    async def __aenter__(self) -> None:
        await super().__aenter__()
        self._since = time.perf_counter()

    async def __aexit__(self, *exc: object) -> None:
        self.longest = max(self.longest, time.perf_counter() - self._since)
        await super().__aexit__(*exc)


class _GcPauses:
    """The longest cyclic-GC pause while active: what a long lock hold may be made of."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._since = 0.0
        gc.callbacks.append(self._on)

    def _on(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._since = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._since)

    def close(self) -> None:
        gc.callbacks.remove(self._on)


class _Counting:
    """Wraps the store: counts the rows each phase writes."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.rows = 0
        orig_commit, orig_save = store.commit, store.save_rule_states

        async def commit(results: Sequence[PollResult]) -> None:
            self.rows += sum(1 + len(r.rule_states) + len(r.events) + len(r.traces) for r in results)
            await orig_commit(results)

        async def save(states: Sequence[Any]) -> None:
            self.rows += len(states)
            await orig_save(states)

        store.commit, store.save_rule_states = commit, save


async def _open(kind: str, tmp: Path) -> tuple[Any, Any]:
    """(store, cleanup)."""
    if kind == "sqlite":
        store = SqliteStore(tmp / "bench.db", synchronous="NORMAL")
        await store.open()
        return store, None
    import asyncpg

    from bridge.store.postgres import PostgresStore

    url = os.environ["WATTBRIDGE_TEST_PG"]
    schema = f"wb_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store = PostgresStore(url, schema=schema, pool_size=4)
    await store.open()

    async def drop() -> None:
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()

    return store, drop


async def _size(kind: str, store: Any, tmp: Path) -> float:
    if kind == "sqlite":
        return sum(p.stat().st_size for p in tmp.glob("bench.db*")) / 1e6
    rows = await store._fetch("SELECT pg_database_size(current_database())")  # whole database
    return float(rows[0][0]) / 1e6


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


async def run(n: int, *, field: bool, kind: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store, cleanup = await _open(kind, tmp)
        try:
            return await _phases(store, n, field=field, kind=kind, tmp=tmp)
        finally:
            await store.close()
            if cleanup is not None:
                await cleanup()


async def _phases(store: Any, n: int, *, field: bool, kind: str, tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"store": kind, "resources": n, "field": field}
    seeded = _snapshots(n, T0, 1)  # the fleet as a baseline poll stored it
    for chunk in range(0, n, 5000):
        await store.commit(seeded[chunk : chunk + 5000])
    if kind == "postgres":
        # A store in service has planner statistics (autovacuum's analyze); one loaded a moment ago
        # has none, and its generic plan for "these ids" then filters every row of the source
        # instead of seeking each id: O(fleet) per 500-id slice (measured: 18 min to arm 250k).
        async with store._transaction() as conn:
            await conn.execute("ANALYZE snapshots")
    out["seed_mb"] = round(await _size(kind, store, tmp), 1)
    clock = ManualClock(T0)
    rules = RuleSet([_rule(field)])
    poller = Poller(store=store, rulebook=_Book(rules), channels={}, clock=clock, health=HealthBoard())  # type: ignore[arg-type]
    await poller.load_state()
    lock = poller._lock = _TimedLock()
    ev = poller._evaluate
    counting = _Counting(store)
    ids = [f"wb-{i:06d}" for i in range(n)]

    async def one_poll() -> float:
        started = time.perf_counter()
        now = clock.now()
        for chunk in range(0, n, SLICE):
            reads = {SOURCE: set(ids[chunk : chunk + SLICE])}
            stale_reads.note(ev, rules, PROVIDER, reads, now)
            armed, resolved = await stale_reads.after(store, ev, rules, PROVIDER, reads, now)
            if armed:
                await store.save_rule_states(armed)
                ev.remember(armed)
            if resolved:
                await store.commit(resolved)
        return time.perf_counter() - started

    counting.rows = 0
    out["arm_ms"] = _ms(await one_poll())
    out["arm_rows"] = counting.rows
    out["armed_mb"] = round(await _size(kind, store, tmp), 1)
    clock.advance(timedelta(minutes=5))
    counting.rows = 0
    out["poll_ms"] = _ms(await one_poll())
    out["poll_rows"] = counting.rows

    scans = []
    for _ in range(20):
        started = time.perf_counter()
        ev.due_now(clock.now())
        scans.append(time.perf_counter() - started)
    out["scan_ms"] = _ms(statistics.median(scans))
    await poller.tick()  # the first tick also looks for timers of removed rules, once
    idle = []
    for _ in range(10):
        started = time.perf_counter()
        if await poller.tick() != 0:
            raise RuntimeError("nothing was due, yet the idle tick notified")
        idle.append(time.perf_counter() - started)
    out["tick_idle_ms"] = _ms(statistics.median(idle))

    # Every resource reports meanwhile: for a `field` rule, its stored timestamp moves on (a poll
    # writes the snapshot: the rule names the field, so its change is kept); without one, a read.
    fresh = T0 + STALE - timedelta(minutes=30)
    if field:
        moved = _snapshots(n, fresh, 2)
        for chunk in range(0, n, 5000):
            await store.commit(moved[chunk : chunk + 5000])
    else:
        ev.read(PROVIDER, SOURCE, ids, fresh)
    clock.set(T0 + STALE + timedelta(seconds=1))
    counting.rows = 0
    lock.longest = 0.0
    due = sum(len(v) for v in ev.due_now(clock.now()).values())
    pauses = _GcPauses()
    started = time.perf_counter()
    events = ticks = 0
    while (nxt := poller.next_due()) is not None and nxt <= clock.now():  # one tick a second, in life
        events += await poller.tick()
        ticks += 1
    pauses.close()
    out["rearm_ticks"] = ticks
    out["rearm_gc_ms"] = _ms(pauses.longest)
    out["rearm_ms"] = _ms(time.perf_counter() - started)
    out["rearm_due"] = due
    out["rearm_rows"] = counting.rows
    out["rearm_events"] = events
    out["rearm_hold_ms"] = _ms(lock.longest)
    out["still_due"] = sum(len(v) for v in ev.due_now(clock.now()).values())
    out["final_mb"] = round(await _size(kind, store, tmp), 1)
    return out


COLUMNS = (
    "store", "resources", "field", "seed_mb", "arm_ms", "arm_rows", "armed_mb", "poll_ms", "poll_rows",
    "scan_ms", "tick_idle_ms", "rearm_due", "rearm_ticks", "rearm_ms", "rearm_hold_ms", "rearm_gc_ms", "rearm_rows", "rearm_events", "still_due", "final_mb",
)  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resources", type=int, default=250_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--no-field", action="store_true", help="a stale rule on reads, not on a timestamp")
    p.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = p.parse_args(argv)
    logs.configure(level="warning", fmt="console")
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    if "postgres" in kinds and not os.environ.get("WATTBRIDGE_TEST_PG"):
        kinds.remove("postgres")
        print("WATTBRIDGE_TEST_PG is unset: PostgreSQL skipped")
    rows = []
    print("  ".join(COLUMNS))
    for kind in kinds:
        for _ in range(args.repeat):
            row = asyncio.run(run(args.resources, field=not args.no_field, kind=kind))
            rows.append(row)
            print("  ".join(str(row[c]) for c in COLUMNS), flush=True)
    return rows


if __name__ == "__main__":
    main()
