"""Where a durable delivery's CPU goes: bench/delivery.py's Wattbridge run alone, profiled.

Runs `run_wattbridge` (the real store, worker and webhook channel against bench/receiver.py) for a
burst or a paced load and prints the CPU per notification split by thread (the event loop's thread
against everything else, i.e. SQLite's), store hops per notification, and optionally a cProfile of
the event-loop thread (sorted by own time) or a pyinstrument tree.

    .venv/bin/python bench/profile_delivery.py [--n 5000] [--rate 1000] [--synchronous FULL]
        [--profile cprofile|pyinstrument|none] [--repeat 3] [--group-window-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
import delivery as bench
from delivery import Receiver

from bridge import logs

HOPS: Counter[str] = Counter()
COMMITS = ("commit_group", "_commit_batches")  # a poll commit's hop: with group commit, and before it
CALLERS: Counter[str] = Counter()  # callers written per poll-commit hop (group commit merges several)


def _count_hops() -> None:
    """Count trips to aiosqlite's thread (each `_execute` is one), by caller."""
    import aiosqlite.core

    real = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__qualname__", str(fn))
        HOPS[name] += 1
        if name in COMMITS:
            CALLERS["callers"] += len(args[1]) if name == "commit_group" else 1
        return await real(self, fn, *args, **kwargs)

    aiosqlite.core.Connection._execute = counted  # type: ignore[method-assign]


async def one(args: argparse.Namespace, rep: int, http: aiohttp.ClientSession, receiver: Receiver) -> str:
    HOPS.clear()
    CALLERS.clear()
    main_cpu0, cpu0 = time.thread_time(), time.process_time()
    prof: Any = None
    if args.profile == "cprofile":
        prof = cProfile.Profile()
        prof.enable()
    elif args.profile == "pyinstrument":
        from pyinstrument import Profiler

        prof = Profiler(interval=0.0005, async_mode="disabled")
        prof.start()
    figures = await bench.run_wattbridge(
        receiver, http, n=args.n, rate=args.rate, synchronous=args.synchronous,
        concurrency=args.concurrency, run=f"prof-{rep}-{time.time_ns()}",
    )  # fmt: skip
    if args.profile == "cprofile":
        prof.disable()
    elif args.profile == "pyinstrument":
        prof.stop()
    main_cpu, cpu = time.thread_time() - main_cpu0, time.process_time() - cpu0
    n = args.n
    hops = sum(HOPS.values())
    commits = sum(HOPS[c] for c in COMMITS)
    line = (
        f"{figures.who} {figures.load}: {figures.rate:.0f}/s p50 {figures.p50_ms:.1f} p99 {figures.p99_ms:.1f} ms; "
        f"CPU {figures.cpu_us:.0f} µs/notif (bench window); whole run {cpu / n * 1e6:.0f} µs, "
        f"event loop {main_cpu / n * 1e6:.0f} µs, other threads {(cpu - main_cpu) / n * 1e6:.0f} µs; "
        f"store hops {hops / n:.2f}/notif {dict(HOPS.most_common(5))}; poll commits {commits / n:.3f}/notif "
        f"({CALLERS['callers'] / max(commits, 1):.2f} callers each); lost {figures.lost}"
    )
    if args.profile == "cprofile":
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats(args.sort).print_stats(args.top)
        line += "\n" + out.getvalue()
    elif args.profile == "pyinstrument":
        line += "\n" + prof.output_text(unicode=True, show_all=False)
    return line


async def main_async(args: argparse.Namespace) -> None:
    _count_hops()
    receiver = Receiver()
    try:
        async with aiohttp.ClientSession() as http:
            for rep in range(args.repeat):
                print(await one(args, rep, http, receiver), flush=True)
    finally:
        receiver.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--rate", type=float, default=None, help="paced hand-over rate (default: a burst)")
    p.add_argument("--synchronous", default="FULL", choices=["FULL", "NORMAL"])
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--profile", default="none", choices=["cprofile", "pyinstrument", "none"])
    p.add_argument("--sort", default="tottime")
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--group-window-ms", type=float, help="the SQLite store's group-commit window")
    args = p.parse_args()
    if args.group_window_ms is not None:
        bench.GROUP_WINDOW_S = args.group_window_ms / 1000
    logs.configure(level="info", fmt="json", stream=io.TextIOWrapper(open(os.devnull, "wb")))  # noqa: SIM115
    print(f"threads at start {threading.active_count()}; loadavg {os.getloadavg()}", flush=True)
    asyncio.run(main_async(args))
    print(f"loadavg {os.getloadavg()}")


if __name__ == "__main__":
    main()
