"""Scale check: 250,000 wallboxes at a 60 s interval (about 4,200 polls/s), sustained, not falling behind.

The bridge runs its real scheduler (APScheduler, one job per watch group: 250,000 wallboxes are ONE
job whose poll walks the watches in slices, not 250,000 jobs). The provider's rate limit is set to
1.1 × wallboxes / interval, so a cycle spreads over ~90 % of the interval as in production. Each cycle
k fires on the grid T0 + m·interval; its slowest poll (the last wallbox read) is `lag` seconds past the end
of its interval (negative: that much slack). A cycle that ends after its interval means the bridge
is falling behind (APScheduler would skip or coalesce the next run). The first cycle is the baseline
(it stores every snapshot) and is reported on its own.

    .venv/bin/python bench/scale.py [--wallboxes 250000] [--interval 60] [--minutes 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.common import Stopwatch, add_fetch_workers, bridge_app, bridge_config, quiet_logs, simulator


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    from bridge.app_keys import POLLER, PROVIDERS
    from bridge.poll.scheduler import PollScheduler

    quiet_logs()
    n, interval = args.wallboxes, args.interval
    rate = 1.1 * n / interval
    cycles: list[dict[str, float]] = []
    with simulator(n, change_every=args.change_every) as sim, tempfile.TemporaryDirectory() as tmp:
        config = bridge_config(
            Path(tmp),
            sim,
            concurrency=args.concurrency,
            rps=rate,
            interval=f"{interval}s",
            fetch_workers=args.fetch_workers,
        )
        async with bridge_app(config, Path(tmp) / "bench.db", n) as app:
            poller = app[POLLER]
            real_poll = poller.poll

            async def timed(provider: Any, group: str) -> Any:
                start = time.monotonic()
                summary = await real_poll(provider, group)
                if group == "wallboxes":
                    cycles.append(
                        {
                            "start": start,
                            "end": time.monotonic(),
                            "observed": summary.observed,
                            "failed": summary.failed,
                            "changed": summary.changed,
                        }
                    )
                    c = cycles[-1]
                    if len(cycles) == 1:  # steady-state CPU is counted from the end of the baseline
                        steady.start()
                    print(
                        f"cycle {len(cycles)}: {summary.observed:,} polled in {c['end'] - c['start']:.1f} s "
                        f"({summary.failed} failed, {summary.changed} changed)",
                        flush=True,
                    )
                return summary

            poller.poll = timed  # type: ignore[method-assign]
            scheduler = PollScheduler(poller, list(app[PROVIDERS].values()))
            watch = Stopwatch(sim, app).start()
            steady = Stopwatch(sim, app)
            scheduler.start()
            try:
                # The baseline cycle may take longer than an interval; the steady cycles are timed after it.
                wanted = args.minutes * 60 / interval + 1
                give_up = time.monotonic() + 3600
                while len(cycles) < wanted and time.monotonic() < give_up:
                    if cycles:
                        # after the baseline: up to one interval to the next grid tick, then the cycles
                        give_up = min(give_up, cycles[0]["end"] + args.minutes * 60 + interval * 2.5)
                    await asyncio.sleep(min(1.0, interval / 4))
            finally:
                await scheduler.stop(drain=5)
                m = watch.stop(sum(int(c["observed"]) for c in cycles) or 1)
                s = steady.stop(sum(int(c["observed"]) for c in cycles[1:]) or 1) if len(cycles) > 1 else None
    steady_cpu = s.cpu / s.seconds if s else float("nan")
    steady_workers = s.workers_cpu / s.seconds if s else float("nan")
    steady_sim = s.sim_load if s else float("nan")
    if not cycles:
        print("== scale: no cycle completed")
        return {"cycles": 0}
    t0 = cycles[0]["start"]
    lags = []
    for k, c in enumerate(cycles):
        # Each run fires on the scheduler's grid T0 + m·interval (a run that overran pushes the next
        # one to a later tick: that shows as the previous cycle's positive lag).
        due = t0 + round((c["start"] - t0) / interval) * interval
        lag = c["end"] - (due + interval)
        late = c["start"] - due
        lags.append(lag)
        print(
            f"cycle {k + 1}{' (baseline)' if k == 0 else ''}: started {late:+.1f} s vs due, "
            f"slowest poll {lag:+.1f} s vs the end of its interval"
        )
    steady = lags[1:] or lags
    worst = max(steady)
    behind = any(lag > 0 for lag in steady) or len(cycles) - 1 < args.minutes * 60 / interval
    print(
        f"== scale: {n:,} wallboxes every {interval} s ({n / interval:,.0f} polls/s needed), "
        f"{len(cycles) - 1} steady cycle(s): slowest poll {worst:+.1f} s vs its interval's end; "
        f"{'FELL BEHIND' if behind else 'kept up'}; CPU after the baseline {steady_cpu:.2f} core for the "
        f"bridge (of which fetch workers {steady_workers:.2f}), {steady_sim:.2f} for the simulator "
        f"(whole run {m.cpu / m.seconds:.2f} / {m.sim_load:.2f})"
    )
    return {"worst_lag": worst, "behind": behind, "cycles": len(cycles)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallboxes", type=int, default=250_000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument(
        "--minutes", type=float, default=5.0, help="steady-state duration after the baseline cycle"
    )
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--change-every", type=int, default=0)
    add_fetch_workers(parser)
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
