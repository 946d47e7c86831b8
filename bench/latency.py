"""Latency: from a poll response arriving at the bridge to its webhook arriving at the receiver.

The whole real bridge (`create_app`: SqliteStore, PoderoProvider, rules, Poller, DeliveryWorker,
WebhookChannel; logging at info, JSON to /dev/null) polls the Podero simulator, with one rule that
notifies every change of `charge_rate_w`. Three processes, each with its own event loop:

- **the simulator** (bench/latency_sim.py: the bundled `PoderoSimulator` app on a loopback port)
  changes wallboxes on its own timer: every `per-poll / rate` seconds it gives the next `per-poll`
  wallboxes (round robin) a new, never repeated `charge_rate_w` (1.0, 2.0, ...). Its CPU is read
  from /proc and printed as a share of one core, so a reader can see it was not the bottleneck;
- **the bridge** (this process, plus its fetch workers with `--fetch-workers N`): the benchmark
  drives `Poller.poll` itself, instead of the scheduler, every `per-poll / rate` seconds, half a
  period after each of the simulator's changes (both schedules are absolute CLOCK_MONOTONIC times);
- **the receiver** (bench/receiver.py) keys each webhook by the change it notifies,
  `wallbox id:new value`, and stamps its arrival.

`--watch by-id` (the default) registers every wallbox as a config watch (`discover = false`), so a
poll reads each wallbox by id; `--watch discover` lists them (the organisation's users, then each
user's wallboxes) instead. `--fetch-workers N` sets `fetch_workers = N` on the provider: by-id
polls are then read in N worker processes (listings never are, so it needs `--watch by-id`); a poll
is read in pages of 500 watches, one worker per page, so below 500 wallboxes one worker reads a poll.

The two timestamps:
- **poll response arrived**: `time.monotonic_ns()` when a fetch of the poll returns in the bridge's
  process: the provider's `fetch` (HTTP responses read, parsed and validated), or with fetch
  workers the pool's `fetch` (the worker's fetch, digest, compare and the trip back to the bridge's
  process, which is therefore *not* in the latency). Both are wrapped on the instance; nothing else
  is changed. Each observation in that fetch's result whose `wallbox id:charge_rate_w` was not seen
  before is recorded with that stamp: the first poll response that contained the value;
- **webhook arrived**: stamped by the receiver (its own process, same CLOCK_MONOTONIC) when the
  request is read. "Leaving the bridge" is this minus one loopback transfer (tens of µs).

Latency is the second minus the first, per value read. A value the simulator replaced before any
poll read it (a poll running late) has no webhook and is not counted: the simulator's `made` is
printed beside the `events` read. `commit` is, per event, the response's arrival to its poll's
return (all of its commits done; the poller's share); `send` is that return to the webhook's
arrival (the delivery side). CPU per event is this process's (every thread) plus its fetch
workers', from /proc, over the polls and the wait for their webhooks.

    .venv/bin/python bench/latency.py [--rate 1000] [--per-poll 20] [--wallboxes 40] [--seconds 5]
        [--repeat 3] [--synchronous FULL NORMAL] [--watch by-id|discover] [--fetch-workers 0]
        [--group-window 0ms]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import io
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))  # crash, delivery, latency_sim: sibling scripts
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))  # bench.common (its CPU accounting)

from crash import write_config
from delivery import Receiver, on_uvloop, stop_child
from latency_sim import boxes

from bench.common import add_fetch_workers, proc_cpu, workers_cpu
from bridge import heap, logs
from bridge.app import create_app
from bridge.app_keys import FETCH_POOLS, POLLER, PROVIDERS
from bridge.config.loader import load_config
from bridge.providers.base import FetchResult

HERE = Path(__file__).resolve().parent
SECRET = "whsec_" + base64.b64encode(b"wattbridge-latency-secret-012345").decode()
LEAD_NS = 100_000_000  # the simulator's first change is this far after the start line is sent


@dataclass(frozen=True, slots=True)
class Latency:
    synchronous: str
    watch: str
    fetch_workers: int
    made: int  # values the simulator made
    events: int  # of which a poll read (each notified once)
    seconds: float
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    commit_p50_ms: float  # of the above: poll response arrived -> its poll returned (the poller's part)
    commit_p99_ms: float
    # the rest: poll returned (its commits done) -> webhook arrived (wake-up, claim, sign, POST)
    send_p50_ms: float
    send_p99_ms: float
    cpu_us: float  # the bridge's CPU (all threads, and its fetch workers) per event read
    sim_core: float  # the simulator's CPU over the polls, as a share of one core
    sim_late_ms: float  # its latest change, behind its schedule
    lost: int
    gc_runs: int = 0  # cyclic collections during the polls, any generation
    gc_ms: float = 0.0  # their pauses, in all
    gc_max_ms: float = 0.0  # the longest one


class GcPauses:
    """The cyclic collector's pauses while installed (`gc.callbacks`): each one stops the event loop."""

    def __init__(self) -> None:
        self.pauses: list[float] = []
        self._start = 0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter_ns()
        else:
            self.pauses.append((time.perf_counter_ns() - self._start) / 1e6)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


class Simulator:
    """bench/latency_sim.py as a child process; closing its stdin stops it."""

    def __init__(self, *, wallboxes: int, per_poll: int, rate: float) -> None:
        cmd = [sys.executable, str(HERE / "latency_sim.py"), "--wallboxes", str(wallboxes),
               "--per-poll", str(per_poll), "--rate", str(rate)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY "):
            self.close()
            raise RuntimeError(f"the simulator did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def start(self, t0_ns: int, ticks: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"start {t0_ns} {ticks}\n")
        self.proc.stdin.flush()

    async def done(self) -> tuple[int, float]:
        """Values made, and how late its latest change was (ms), once its last change is made."""
        assert self.proc.stdout is not None
        line = await asyncio.to_thread(self.proc.stdout.readline)
        if not line.startswith("DONE "):
            raise RuntimeError(f"the simulator did not finish: {line!r}")
        _, made, late = line.split()
        return int(made), float(late)

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def close(self) -> None:
        stop_child(self.proc)


def _config(
    workdir: Path, podero_url: str, hook_url: str, synchronous: str, *, watch: str, fetch_workers: int,
    wallboxes: int, group_window: str | None = None,
) -> Path:  # fmt: skip
    store = f'synchronous = "{synchronous}"'
    if group_window is not None:  # [store] group_commit_window, as a user would set it
        store += f'\ngroup_commit_window = "{group_window}"'
    return write_config(
        workdir,
        podero_url,
        hook_url,
        secret=SECRET,
        store=store,
        podero=f"max_requests_per_second = 100000\nmax_concurrency = 16\nfetch_workers = {fetch_workers}",
        watches=boxes(wallboxes) if watch == "by-id" else (),  # given watches, discover = false
    )


async def run_once(
    receiver: Receiver, http: aiohttp.ClientSession, *, rate: float, per_poll: int, wallboxes: int,
    seconds: float, synchronous: str, watch: str = "by-id", fetch_workers: int = 0,
    group_window: str | None = None,
) -> Latency:  # fmt: skip
    polls = max(1, round(rate * seconds / per_poll))
    step_ns = round(per_poll / rate * 1e9)  # between the simulator's changes, and between polls
    sim = Simulator(wallboxes=wallboxes, per_poll=per_poll, rate=rate)
    try:
        with tempfile.TemporaryDirectory(prefix="wb-latency-") as tmp:
            config = load_config(
                _config(Path(tmp), sim.url, receiver.url, synchronous, watch=watch,
                        fetch_workers=fetch_workers, wallboxes=wallboxes, group_window=group_window)
            )  # fmt: skip
            app = create_app(config, start_scheduler=False)
            runner = web.AppRunner(app)
            await runner.setup()  # runs the app's cleanup contexts: store, providers, pools, delivery
            heap.settle()  # as `wattbridge run` does once started
            try:
                provider = app[PROVIDERS]["podero"]
                poller = app[POLLER]
                seen: set[str] = set()  # every "wallbox:value" a poll has read, the baseline's included
                read_at: dict[str, int] = {}  # "wallbox:value" -> when the first response holding it arrived
                this_poll: list[str] = []  # the values first read by the poll in progress

                def record(result: FetchResult) -> FetchResult:
                    at = time.monotonic_ns()  # a poll response has arrived in the bridge's process
                    for obs in result.observations:
                        key = f"{obs.key.resource_id}:{(obs.state or {}).get('charge_rate_w')}"
                        # Only a value's first read counts: a later poll reading it again (unchanged)
                        # notifies nothing, and a value the baseline read has no webhook to wait for.
                        if key not in seen:
                            seen.add(key)
                            read_at[key] = at
                            this_poll.append(key)
                    return result

                # Every by-id page and every listing goes through exactly one of these two.
                real_fetch = provider.fetch

                async def stamped_fetch(
                    group: str, watches: Sequence[Any] = (), *, skip: AbstractSet[str] = frozenset()
                ) -> FetchResult:
                    return record(await real_fetch(group, watches, skip=skip))

                provider.fetch = stamped_fetch  # type: ignore[method-assign]
                pool = app[FETCH_POOLS].get("podero")
                if pool is not None:
                    real_pool_fetch = pool.fetch

                    async def stamped_pool_fetch(page: Any) -> FetchResult:
                        return record(await real_pool_fetch(page))

                    pool.fetch = stamped_pool_fetch  # type: ignore[method-assign]

                # The baseline read (every charge rate 0.0) notifies nothing; with fetch workers it
                # also starts the worker that reads, so its start-up is not counted in the CPU below.
                await poller.poll(provider, "wallboxes")
                read_at.clear()
                this_poll.clear()
                await receiver.arrivals(http)

                done_at: dict[str, int] = {}  # "wallbox:value" -> when the poll that read it returned
                t0 = time.monotonic_ns() + LEAD_NS
                sim.start(t0, polls)  # the simulator makes its changes at t0 + k x step
                cpu0, workers0, sim_cpu0 = time.process_time(), workers_cpu(app), sim.cpu()
                pauses = GcPauses().__enter__()
                for k in range(polls):
                    # Half a period after the simulator's k-th change, so each poll falls between two
                    # changes; a poll running late makes the next one start at once (a backlog).
                    delay = (t0 + k * step_ns + step_ns // 2 - time.monotonic_ns()) / 1e9
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await poller.poll(provider, "wallboxes")
                    returned = time.monotonic_ns()
                    for key in this_poll:
                        done_at[key] = returned
                    this_poll.clear()
                elapsed = (time.monotonic_ns() - t0) / 1e9
                sim_core = (sim.cpu() - sim_cpu0) / elapsed
                async with asyncio.timeout(30):
                    made, sim_late = await sim.done()
                deadline = time.monotonic() + 30
                while await receiver.count(http) < len(read_at) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                pauses.__exit__()
                workers = sum(cpu - workers0.get(pid, 0.0) for pid, cpu in workers_cpu(app).items())
                cpu = time.process_time() - cpu0 + workers
                arrived = await receiver.arrivals(http)
            finally:
                heap.release()
                await runner.cleanup()
    finally:
        sim.close()
    first: dict[str, int] = {}
    for at, key in arrived:
        first.setdefault(key, at)
    lat = sorted((first[k] - read_at[k]) / 1e6 for k in read_at if k in first)
    commit = sorted((done_at[k] - read_at[k]) / 1e6 for k in done_at)
    send = sorted((first[k] - done_at[k]) / 1e6 for k in done_at if k in first)

    def q(p: float, values: list[float] = lat) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 2) if values else float("nan")

    return Latency(
        synchronous=synchronous,
        watch=watch,
        fetch_workers=fetch_workers,
        made=made,
        events=len(read_at),
        seconds=round(elapsed, 2),
        rate=round(len(read_at) / elapsed, 1),
        p50_ms=q(0.5),
        p90_ms=q(0.9),
        p99_ms=q(0.99),
        max_ms=round(lat[-1], 2) if lat else float("nan"),
        commit_p50_ms=q(0.5, commit),
        commit_p99_ms=q(0.99, commit),
        send_p50_ms=q(0.5, send),
        send_p99_ms=q(0.99, send),
        cpu_us=round(cpu / max(1, len(read_at)) * 1e6, 1),
        sim_core=round(sim_core, 3),
        sim_late_ms=sim_late,
        lost=len(read_at) - len(lat),
        gc_runs=len(pauses.pauses),
        gc_ms=round(sum(pauses.pauses), 1),
        gc_max_ms=round(max(pauses.pauses, default=0.0), 2),
    )


async def bench(args: argparse.Namespace) -> list[Latency]:
    receiver = Receiver("--key", "body")
    rows: list[Latency] = []
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(args.repeat):
                for sync in args.synchronous:
                    rows.append(await run_once(
                        receiver, http, rate=args.rate, per_poll=args.per_poll, wallboxes=args.wallboxes,
                        seconds=args.seconds, synchronous=sync, watch=args.watch,
                        fetch_workers=args.fetch_workers, group_window=args.group_window,
                    ))  # fmt: skip
                    print(rows[-1], file=sys.stderr)
    finally:
        receiver.close()
    return rows


def main(argv: Sequence[str] | None = None) -> list[Latency]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0, help="values the simulator makes per second")
    p.add_argument("--per-poll", type=int, default=20, help="wallboxes changed per poll period")
    p.add_argument("--wallboxes", type=int, default=40, help="wallboxes read by every poll")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"], choices=["FULL", "NORMAL"])
    p.add_argument("--watch", choices=["by-id", "discover"], default="by-id",
                   help="read each wallbox by id (config watches), or list them (discovery)")  # fmt: skip
    add_fetch_workers(p)  # by-id watches only (checked below)
    p.add_argument(
        "--group-window", help='[store] group_commit_window, e.g. "0ms" (default: the store\'s own)'
    )
    p.add_argument("--no-logs", dest="logs", action="store_false", help="leave logging as it is")
    p.add_argument("--uvloop", action="store_true", help="run the bridge on uvloop (pip install uvloop)")
    args = p.parse_args(argv)
    if args.per_poll > args.wallboxes:
        p.error("--per-poll cannot exceed --wallboxes (a wallbox changes at most once per poll period)")
    if args.fetch_workers and args.watch != "by-id":
        p.error("--fetch-workers reads by-id polls only: listings are read in the bridge's process")
    if args.logs:  # as `wattbridge run` logs (info, JSON), into /dev/null; tests keep their own logging
        logs.configure(level="info", fmt="json", stream=io.TextIOWrapper(open(os.devnull, "wb")))  # noqa: SIM115
    rows = asyncio.run(bench(args)) if not args.uvloop else on_uvloop(bench(args))
    print(f"watch {args.watch}, fetch workers {args.fetch_workers}")
    head = ("synchronous", "made", "events", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms",
            "commit p50/p99 ms", "send p50/p99 ms", "CPU µs/event", "sim core")  # fmt: skip
    print(f"{head[0]:<12} " + " ".join(f"{h:>7}" for h in head[1:]) + " lost  gc runs/ms/max ms")
    for r in rows:
        print(
            f"{r.synchronous:<12} {r.made:>7} {r.events:>7} {r.rate:>7.0f} {r.p50_ms:>7.1f} {r.p90_ms:>7.1f} "
            f"{r.p99_ms:>7.1f} {r.max_ms:>7.1f} {r.commit_p50_ms:>7.1f}/{r.commit_p99_ms:<7.1f} "
            f"{r.send_p50_ms:>7.1f}/{r.send_p99_ms:<7.1f} {r.cpu_us:>7.0f} {r.sim_core:>7.0%} {r.lost:>4}  "
            f"{r.gc_runs}/{r.gc_ms}/{r.gc_max_ms}"
        )
    print(f"{os.cpu_count()} cores; loadavg {os.getloadavg()}")
    return rows


if __name__ == "__main__":
    main()
