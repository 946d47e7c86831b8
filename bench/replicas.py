"""Replicas: several `wattbridge run` on one PostgreSQL database, some SIGKILLed and restarted while
wallboxes change; every change notified, duplicates only as re-sends (same webhook-id, same body).

The Podero simulator (wallboxes over users, discovered every poll) and a verifying webhook sink run in
this process; the replicas are child processes (bench/crash.py's BridgeProcess) on one PostgreSQL
schema made for the run and dropped after it. A wallbox moves to its next step only when its current
step was notified (bench/crash.py's Driver), so a lost step stops the run (a timeout, reported).

    WATTBRIDGE_TEST_PG=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/replicas.py [--replicas 3] [--wallboxes 1000] [--steps 10] [--kills 10]
    ... --compare            one replica, then two, no kills: notifications/s of each, and the ratio
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
from dataclasses import dataclass
from pathlib import Path

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


async def replica_run(
    url: str, *, replicas: int, wallboxes: int, steps: int, kills: int, seed: int, budget: float
) -> ReplicaRun:
    rng = random.Random(seed)
    run = ReplicaRun(replicas=replicas, wallboxes=wallboxes, steps=steps)
    schema = f"wb_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    store_url = f"{url}?search_path={schema}"
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    boxes: list[str] = []
    for u in range(math.ceil(wallboxes / 10)):
        user = sim.add_user(email=f"user{u}@example.com")
        boxes += [sim.add_wallbox(user, charge_rate_w=0.0) for _ in range(min(10, wallboxes - len(boxes)))]
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
                    podero='poll_interval = "500ms"\nmax_requests_per_second = 1000\nmax_concurrency = 8'
                    '\ntimeout = "2s"',
                    partner='timeout = "1s"\nretry = ["0s", "200ms", "500ms", "1s", "2s", "5s", "10s"]',
                    tail=f'[smtp]\ntimeout = "1s"\n[cluster]\nreplica_id = "replica-{i}"\nlease_period = "3s"',
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
                driving = asyncio.create_task(driver.run())
                for _ in range(kills):
                    await asyncio.sleep(rng.uniform(1.0, 4.0))
                    victim = rng.choice(procs)
                    await victim.kill()  # SIGKILL: its leases run out, the others take over
                    run.kills += 1
                    await victim.start()
                while not driver.done.is_set():
                    if time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.1)
                run.seconds = time.monotonic() - started
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


async def _scalar(conn: asyncpg.Connection, schema: str, sql: str) -> object:
    with contextlib.suppress(asyncpg.UndefinedTableError):
        async with conn.transaction():
            await conn.execute(f'SET LOCAL search_path = "{schema}"')
            return await conn.fetchval(sql)
    return None


def figures(run: ReplicaRun) -> str:
    rate = run.received / run.seconds if run.seconds else 0.0
    return (
        f"replicas={run.replicas} wallboxes={run.wallboxes} steps={run.steps} kills={run.kills}: "
        f"changes={run.changes} received={run.received} lost={run.lost} duplicates={run.duplicates} "
        f"(same id, other body: {run.mismatched}; one step under two ids: {run.two_ids_one_step}) "
        f"in {run.seconds:.1f}s = {rate:.0f} notifications/s"
    )


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
    args = parser.parse_args()
    url = os.environ.get("WATTBRIDGE_TEST_PG")
    if not url:
        print("WATTBRIDGE_TEST_PG is unset (e.g. postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)
        return 2
    common = {"wallboxes": args.wallboxes, "steps": args.steps, "seed": args.seed, "budget": args.budget}
    if args.compare:
        one = asyncio.run(replica_run(url, replicas=1, kills=0, **common))
        two = asyncio.run(replica_run(url, replicas=2, kills=0, **common))
        print(figures(one))
        print(figures(two))
        ratio = (
            (two.received / two.seconds) / (one.received / one.seconds) if one.seconds and two.seconds else 0
        )
        print(f"two replicas / one: {ratio:.2f}x notifications/s")
        return 0 if one.lost == two.lost == 0 else 1
    run = asyncio.run(replica_run(url, replicas=args.replicas, kills=args.kills, **common))
    print(figures(run))
    return 0 if run.lost == 0 and run.mismatched == 0 and run.two_ids_one_step == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
