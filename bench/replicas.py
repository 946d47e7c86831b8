"""Replicas: several `wattbridge run` on one PostgreSQL database, some SIGKILLed and restarted while
wallboxes change; every change notified, duplicates only as re-sends (same webhook-id, same body).

The Podero simulator (wallboxes watched by id, so the group is polled in `[cluster] shards`; or
`--discover`: listed per user every poll, one lease) and a verifying webhook sink run in this
process; the replicas are child processes (bench/crash.py's BridgeProcess) on one PostgreSQL schema
made for the run and dropped after it. A wallbox moves to its next step only when its current step
was notified (bench/crash.py's Driver), so a lost step stops the run (a timeout, reported).

Takeover: before each SIGKILL the harness reads the victim's poll leases from the database, and
after it, every 20 ms, their holders: the takeover time of a kill is until every one of them is
held by another replica (a lease is taken by the run that then polls it at once), before the
victim is started again (a replica restarted under its own id resumes its own leases at once).

    WATTBRIDGE_TEST_PG=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/replicas.py [--replicas 3] [--wallboxes 1000] [--steps 10] [--kills 10]
    ... --compare            one replica, then two, no kills, in this step-by-step harness (the
                             in-process simulator and sink share this process's core); the
                             throughput comparison is bench/replicas_compare.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.crash import ORG, SECRET, BridgeProcess, Driver, _free_port, served, write_config
from bridge.clock import SystemClock
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.sinks import WebhookSink


@dataclass(slots=True, kw_only=True)
class ReplicaRun:
    replicas: int
    wallboxes: int
    steps: int
    kills: int = 0
    changes: int = 0
    received: int = 0
    lost: int = 0
    duplicates: int = 0  # arrivals beyond the first of a webhook-id
    mismatched: int = 0  # webhook-ids that arrived with two different bodies (must be 0)
    two_ids_one_step: int = 0  # steps notified under two webhook-ids (must be 0: one transition, one event)
    seconds: float = 0.0
    conflicts_seen: bool = False
    reads: int = 0  # wallbox GETs the simulator answered while the driver ran (polls of one wallbox)
    lease_period: float = 3.0
    poll_interval: float = 0.5
    takeovers: list[float] = field(default_factory=list)  # seconds from SIGKILL to all leases moved
    not_taken: int = 0  # kills whose leases were not all taken within the harness's wait


async def replica_run(
    url: str,
    *,
    replicas: int,
    wallboxes: int,
    steps: int,
    kills: int,
    seed: int,
    budget: float,
    rate: float = 1000,
    poll_interval: float = 0.5,
    lease_period: float = 3.0,
    shards: int = 8,
    discover: bool = False,
) -> ReplicaRun:
    rng = random.Random(seed)
    run = ReplicaRun(
        replicas=replicas,
        wallboxes=wallboxes,
        steps=steps,
        lease_period=lease_period,
        poll_interval=poll_interval,
    )
    schema = f"wb_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store_url = f"{url}?search_path={schema}"
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    boxes: list[str] = []
    watches: list[tuple[str, str]] = []
    for u in range(math.ceil(wallboxes / 10)):
        user = sim.add_user(email=f"user{u}@example.com")
        mine = [sim.add_wallbox(user, charge_rate_w=0.0) for _ in range(min(10, wallboxes - len(boxes)))]
        boxes += mine
        watches += [(user, b) for b in mine]
    sink = WebhookSink(SECRET)
    driver = Driver(sim, sink, boxes, steps)
    deadline = time.monotonic() + budget
    with tempfile.TemporaryDirectory(prefix="wb-replicas-") as tmp:
        async with served(sim.app()) as podero_url, served(sink.app()) as sink_url:
            procs: list[BridgeProcess] = []
            logs = []
            for i in range(replicas):
                work = Path(tmp) / f"r{i}"
                work.mkdir()
                config = write_config(
                    work,
                    podero_url,
                    f"{sink_url}/hooks/partner",
                    store_url=store_url,
                    server=f'listen = "127.0.0.1:{_free_port()}"\ndrain_timeout = "3s"',
                    podero=f'poll_interval = "{poll_interval * 1000:.0f}ms"\nmax_requests_per_second = {rate}'
                    '\nmax_concurrency = 8\ntimeout = "2s"',
                    partner='timeout = "1s"\nretry = ["0s", "200ms", "500ms", "1s", "2s", "5s", "10s"]',
                    tail=f'[smtp]\ntimeout = "1s"\n[cluster]\nreplica_id = "replica-{i}"'
                    f'\nlease_period = "{lease_period:g}s"\nshards = {shards}',
                    watches=() if discover else watches,
                )
                logs.append((work / "bridge.log").open("ab"))
                procs.append(BridgeProcess(config, logs[-1]))
            driving = None
            try:
                for p in procs:
                    await p.start()
                q = "SELECT COUNT(*) FROM snapshots WHERE source = 'podero.wallbox' AND resource_id <> ''"
                while await _scalar(admin, schema, q) != wallboxes:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the baseline did not finish")
                    await asyncio.sleep(0.2)
                started = time.monotonic()
                reads_before = _wallbox_reads(sim)
                driving = asyncio.create_task(driver.run())
                for _ in range(kills):
                    await asyncio.sleep(rng.uniform(1.0, 4.0))
                    i = rng.randrange(replicas)
                    held = await _poll_leases(admin, schema, f"replica-{i}")
                    # A victim restarted moments ago may hold nothing yet: wait for its first lease.
                    until = time.monotonic() + 3 * lease_period
                    while replicas > 1 and not held and time.monotonic() < until:
                        await asyncio.sleep(0.1)
                        held = await _poll_leases(admin, schema, f"replica-{i}")
                    await procs[i].kill()  # SIGKILL: its leases run out, the others take over
                    killed = time.monotonic()
                    run.kills += 1
                    if held and replicas > 1:
                        wait = 4 * lease_period + 2 * poll_interval
                        took = await _taken_over(admin, schema, f"replica-{i}", held, killed + wait)
                        if took is None:
                            run.not_taken += 1
                        else:
                            run.takeovers.append(took - killed)
                    await procs[i].start()
                while not driver.done.is_set():
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                run.seconds = time.monotonic() - started
                run.reads = _wallbox_reads(sim) - reads_before
            finally:
                for p in procs:
                    await p.stop(timeout=10)
                for f in logs:
                    f.close()
                if os.environ.get("WATTBRIDGE_KEEP_LOGS"):  # debugging: keep the replicas' logs
                    for i in range(replicas):
                        shutil.copy(
                            Path(tmp) / f"r{i}" / "bridge.log",
                            Path(tempfile.gettempdir()) / f"replica-{i}.log",
                        )
                if driving is not None:
                    driving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await driving
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                await admin.close()
    receipts = driver.receipts
    run.changes = len(driver.expected)
    run.received = len(receipts)
    run.lost = len(driver.expected - {(r.resource_id, r.step) for r in receipts})
    run.duplicates = len(receipts) - len({r.webhook_id for r in receipts})
    bodies: dict[str, set[bytes]] = {}
    ids: dict[tuple[str, int], set[str]] = {}
    for r in receipts:
        bodies.setdefault(r.webhook_id, set()).add(r.body)
        ids.setdefault((r.resource_id, r.step), set()).add(r.webhook_id)
    run.mismatched = sum(len(b) > 1 for b in bodies.values())
    run.two_ids_one_step = sum(len(i) > 1 for i in ids.values())
    return run


def _wallbox_reads(sim: PoderoSimulator) -> int:
    return sum(1 for method, path in sim.requests if method == "GET" and "/wallboxes" in path)


async def _poll_leases(conn: asyncpg.Connection, schema: str, holder: str) -> list[str]:
    """The poll leases (groups and shards) `holder` holds now."""
    async with conn.transaction():
        await conn.execute(f'SET LOCAL search_path = "{schema}"')
        rows = await conn.fetch(
            "SELECT name FROM leases WHERE holder = $1 AND name LIKE 'poll:%' AND expires_at > now()", holder
        )
    return [r[0] for r in rows]


async def _taken_over(
    conn: asyncpg.Connection, schema: str, victim: str, names: list[str], until: float
) -> float | None:
    """When (time.monotonic) every one of `names` is first seen held by a replica other than the
    victim; None if not by `until`."""
    left = set(names)
    while left:
        if time.monotonic() > until:
            return None
        await asyncio.sleep(0.02)
        async with conn.transaction():
            await conn.execute(f'SET LOCAL search_path = "{schema}"')
            rows = await conn.fetch(
                "SELECT name, holder FROM leases WHERE name = ANY($1::text[])", list(left)
            )
        left -= {name for name, holder in rows if holder != victim}
    return time.monotonic()


async def _scalar(conn: asyncpg.Connection, schema: str, sql: str) -> object:
    with contextlib.suppress(asyncpg.UndefinedTableError):
        async with conn.transaction():
            await conn.execute(f'SET LOCAL search_path = "{schema}"')
            return await conn.fetchval(sql)
    return None


def figures(run: ReplicaRun) -> str:
    rate = run.received / run.seconds if run.seconds else 0.0
    reads = run.reads / run.seconds if run.seconds else 0.0
    text = (
        f"replicas={run.replicas} wallboxes={run.wallboxes} steps={run.steps} kills={run.kills}: "
        f"changes={run.changes} received={run.received} lost={run.lost} duplicates={run.duplicates} "
        f"(same id, other body: {run.mismatched}; one step under two ids: {run.two_ids_one_step}) "
        f"in {run.seconds:.1f}s = {rate:.0f} deliveries/s, {reads:.0f} provider reads/s"
    )
    if run.takeovers or run.not_taken:
        bound = run.lease_period + run.poll_interval
        each = " ".join(f"{t:.2f}" for t in run.takeovers)
        text += (
            f"\ntakeover after SIGKILL (s): {each}; max {max(run.takeovers, default=0):.2f}, "
            f"bound lease_period + poll_interval = {bound:.2f}; not taken in time: {run.not_taken}"
        )
    return text


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--wallboxes", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument(
        "--rate", type=float, default=1000, help="podero max_requests_per_second (all replicas)"
    )
    parser.add_argument("--poll-interval", type=float, default=0.5, help="seconds")
    parser.add_argument("--lease-period", type=float, default=3.0, help="seconds")
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--discover", action="store_true", help="list wallboxes per user (one lease)")
    args = parser.parse_args()
    url = os.environ.get("WATTBRIDGE_TEST_PG")
    if not url:
        print("WATTBRIDGE_TEST_PG is unset (e.g. postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)
        return 2
    common: dict[str, Any] = {
        "wallboxes": args.wallboxes,
        "steps": args.steps,
        "seed": args.seed,
        "budget": args.budget,
        "rate": args.rate,
        "poll_interval": args.poll_interval,
        "lease_period": args.lease_period,
        "shards": args.shards,
        "discover": args.discover,
    }
    if args.compare:
        one = asyncio.run(replica_run(url, replicas=1, kills=0, **common))
        two = asyncio.run(replica_run(url, replicas=2, kills=0, **common))
        print(figures(one))
        print(figures(two))
        if one.seconds and two.seconds and one.received and one.reads:
            deliveries = (two.received / two.seconds) / (one.received / one.seconds)
            reads = (two.reads / two.seconds) / (one.reads / one.seconds)
            print(f"two replicas / one: {deliveries:.2f}x deliveries/s, {reads:.2f}x provider reads/s")
        return 0 if one.lost == two.lost == 0 else 1
    run = asyncio.run(replica_run(url, replicas=args.replicas, kills=args.kills, **common))
    print(figures(run))
    return 0 if run.lost == 0 and run.mismatched == 0 and run.two_ids_one_step == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
