"""Memory: RSS per tracked wallbox above the baseline process (target ≤ 1 KiB).

The bridge runs in this process against the simulator process; the baseline is this process with the
app started and every watch registered but nothing polled. Then every wallbox is polled twice (the
baseline poll stores each snapshot; the second is the steady state) and RSS is read again after a
garbage collection. Snapshots live in SQLite; the poller keeps only a 64-bit digest per resource.

    .venv/bin/python bench/memory.py [--wallboxes 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.common import bridge_app, bridge_config, proc_rss, quiet_logs, simulator


def _rss() -> int:
    gc.collect()
    return proc_rss(os.getpid())


async def main_async(args: argparse.Namespace) -> dict[str, float]:
    from bridge.app_keys import POLLER, PROVIDERS

    quiet_logs()
    n = args.wallboxes
    with simulator(n) as sim, tempfile.TemporaryDirectory() as tmp:
        config = bridge_config(Path(tmp), sim, concurrency=args.concurrency)
        async with bridge_app(config, Path(tmp) / "bench.db", n) as app:
            poller, provider = app[POLLER], app[PROVIDERS]["podero"]
            base = _rss()
            started = time.perf_counter()
            await poller.poll(provider, "wallboxes")
            first = _rss()
            summary = await poller.poll(provider, "wallboxes")
            second = _rss()
            took = time.perf_counter() - started
    per = (second - base) / n
    print(f"baseline process (app started, {n:,} watches, nothing polled): {base / 2**20:,.1f} MiB")
    print(
        f"after the baseline poll: {first / 2**20:,.1f} MiB; after the steady-state poll: {second / 2**20:,.1f} MiB"
    )
    print(
        f"== memory: {per:,.0f} bytes RSS per tracked wallbox above the baseline ({n:,} wallboxes, "
        f"{summary.observed:,} polled in the second round; {took:.0f} s for both rounds)  target ≤ 1024"
    )
    return {"bytes_per_resource": per, "baseline_mib": base / 2**20}


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallboxes", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=50)
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
