"""Two `wattbridge run` replicas against one, on one PostgreSQL database: provider reads/s (polls of
one wallbox) and deliveries/s, measured in one run.

The provider is the lean simulator in its own process (bench/simserver.py: the same bytes as the
bundled one at a fraction of its CPU), which also receives the webhooks and counts both; every
`--change-every`-th read of a wallbox flips it (charging at 7.2 kW, or idle), so that share of the
reads is a change the rule notifies. Each replica is a child process (bench/crash.py's
BridgeProcess) watching every wallbox by id, so the group is polled in `[cluster] shards` split
between the replicas. After the baseline (a snapshot of every wallbox) and a warm-up, the counters
are read over `--seconds`; CPU seconds of the simulator and of each replica over the same window
say what limited the run. The provider's `--rate` and `--concurrency` are for all replicas
together (each runs with its share), so they are set not to bind: what is measured is CPU.

    WATTBRIDGE_TEST_PG=postgresql://postgres@127.0.0.1:5432/test \\
        .venv/bin/python bench/replicas_compare.py [--wallboxes 2000] [--seconds 20] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Sim, machine_busy, postgres_cpu, proc_cpu, simulator
from bench.crash import BridgeProcess, _free_port, write_config
from bench.replicas import _scalar
from bench.simserver import user_id, wallbox_id


@dataclass(slots=True)
class Throughput:
    replicas: int
    seconds: float
    reads: int
    deliveries: int
    sim_cpu: float  # seconds of CPU over the window
    replica_cpu: list[float]
    pg_cpu: float  # PostgreSQL (every process) over the window
    busy: float  # the whole machine, CPU seconds over the window

    def line(self) -> str:
        cpu = " + ".join(f"{c / self.seconds:.0%}" for c in self.replica_cpu)
        return (
            f"replicas={self.replicas}: {self.reads / self.seconds:,.0f} provider reads/s, "
            f"{self.deliveries / self.seconds:,.0f} deliveries/s over {self.seconds:.1f}s "
            f"(CPU of a core: replicas {cpu}, simulator {self.sim_cpu / self.seconds:.0%}; "
            f"{sum(self.replica_cpu) / max(1, self.reads) * 1e6:.0f} µs of replica CPU per read; "
            f"PostgreSQL {self.pg_cpu / self.seconds:.0%}; the machine {self.busy / self.seconds:.2f} of "
            f"{os.cpu_count()} cores busy)"
        )


async def throughput(
    url: str,
    sim: Sim,
    *,
    replicas: int,
    wallboxes: int,
    seconds: float,
    rate: float,
    concurrency: int,
    poll_interval: float,
    shards: int,
) -> Throughput:
    schema = f"wb_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE SCHEMA "{schema}"')
    watches = [(user_id(i), wallbox_id(i)) for i in range(wallboxes)]
    procs: list[BridgeProcess] = []
    logs = []
    try:
        with tempfile.TemporaryDirectory(prefix="wb-compare-") as tmp:
            for i in range(replicas):
                work = Path(tmp) / f"r{i}"
                work.mkdir()
                config = write_config(
                    work,
                    sim.base_url,
                    f"{sim.base_url}/hooks/energy",
                    store_url=f"{url}?search_path={schema}",
                    server=f'listen = "127.0.0.1:{_free_port()}"\ndrain_timeout = "3s"',
                    podero=f'poll_interval = "{poll_interval * 1000:.0f}ms"\nmax_requests_per_second = {rate}'
                    f'\nmax_concurrency = {concurrency}\ntimeout = "5s"',
                    partner='timeout = "2s"',
                    tail=f'[smtp]\ntimeout = "1s"\n[cluster]\nreplica_id = "replica-{i}"\nshards = {shards}',
                    watches=watches,
                )
                logs.append((work / "bridge.log").open("ab"))
                procs.append(BridgeProcess(config, logs[-1]))
            for p in procs:
                await p.start()
            q = "SELECT COUNT(*) FROM snapshots WHERE source = 'podero.wallbox' AND resource_id <> ''"
            deadline = time.monotonic() + 300
            while await _scalar(admin, schema, q) != wallboxes:
                if time.monotonic() > deadline:
                    raise TimeoutError("the baseline did not finish")
                await asyncio.sleep(0.2)
            # Warm-up: the shards split evenly (a replica sees the others at its next heartbeat,
            # a third of a lease period after they joined), then 3 s more for the outbox to flow.
            await _balanced(admin, schema, replicas, shards, until=time.monotonic() + 60)
            await asyncio.sleep(3.0)
            pids = [p.proc.pid for p in procs if p.proc is not None]
            before, cpu0, scpu0, pg0, busy0, t0 = (
                await sim.stats(),
                [proc_cpu(p) for p in pids],
                sim.cpu(),
                postgres_cpu(),
                machine_busy(),
                time.monotonic(),
            )
            await asyncio.sleep(seconds)
            after, cpu1, scpu1, pg1, busy1, t1 = (
                await sim.stats(),
                [proc_cpu(p) for p in pids],
                sim.cpu(),
                postgres_cpu(),
                machine_busy(),
                time.monotonic(),
            )
            return Throughput(
                replicas=replicas,
                seconds=t1 - t0,
                reads=int(after["gets"]) - int(before["gets"]),
                deliveries=int(after["posts"]) - int(before["posts"]),
                sim_cpu=scpu1 - scpu0,
                replica_cpu=[b - a for a, b in zip(cpu0, cpu1, strict=True)],
                pg_cpu=pg1 - pg0,
                busy=busy1 - busy0,
            )
    finally:
        for p in procs:
            await p.stop(timeout=10)
        for f in logs:
            f.close()
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await admin.close()


async def _balanced(
    conn: asyncpg.Connection, schema: str, replicas: int, shards: int, *, until: float
) -> None:
    """Until each replica holds its even part of the wallbox shards (or `until`)."""
    fair = sorted(shards // replicas + (1 if i < shards % replicas else 0) for i in range(replicas))
    while time.monotonic() < until:
        async with conn.transaction():
            await conn.execute(f'SET LOCAL search_path = "{schema}"')
            rows = await conn.fetch(
                "SELECT holder, COUNT(*) FROM leases WHERE name LIKE 'poll:podero:wallboxes:%' "
                "AND expires_at > now() GROUP BY holder"
            )
        if sorted(int(r[1]) for r in rows) == fair:
            return
        await asyncio.sleep(0.2)
    print("warning: the shards were not split evenly before the measurement", flush=True)


async def compare(url: str, args: argparse.Namespace) -> int:
    ratios: list[tuple[float, float]] = []
    opts = {
        "wallboxes": args.wallboxes,
        "seconds": args.seconds,
        "rate": args.rate,
        "concurrency": args.concurrency,
        "poll_interval": args.poll_interval,
        "shards": args.shards,
    }
    with simulator(args.wallboxes, change_every=args.change_every) as sim:
        for n in range(args.repeat):
            one = await throughput(url, sim, replicas=1, **opts)
            two = await throughput(url, sim, replicas=2, **opts)
            reads = (two.reads / two.seconds) / (one.reads / one.seconds) if one.reads else 0.0
            sent = (two.deliveries / two.seconds) / (one.deliveries / one.seconds) if one.deliveries else 0.0
            ratios.append((reads, sent))
            print(f"run {n + 1}: {one.line()}\n       {two.line()}")
            print(f"       two / one: {reads:.2f}x provider reads/s, {sent:.2f}x deliveries/s", flush=True)
    if len(ratios) > 1:
        r, d = [sorted(x) for x in zip(*ratios, strict=True)]
        print(f"over {len(ratios)} runs: reads {r[0]:.2f}-{r[-1]:.2f}x, deliveries {d[0]:.2f}-{d[-1]:.2f}x")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallboxes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--change-every", type=int, default=20, help="every Nth read of a wallbox changes it")
    parser.add_argument(
        "--rate", type=float, default=50000, help="podero max_requests_per_second (all replicas)"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="podero max_concurrency (all replicas)")
    parser.add_argument("--poll-interval", type=float, default=0.25, help="seconds")
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    url = os.environ.get("WATTBRIDGE_TEST_PG")
    if not url:
        print("WATTBRIDGE_TEST_PG is unset (e.g. postgresql://postgres@127.0.0.1:5432/test)", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(compare(url, args))
    return 1


if __name__ == "__main__":
    sys.exit(main())
