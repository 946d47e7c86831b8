"""Poll throughput: the bridge end to end versus a bare aiohttp client, same bodies, same concurrency.

10,000 simulated Podero wallboxes (bench/simserver.py, a separate process serving the bundled
simulator's bodies) are watched by id. The bridge runs its real app (store, provider, poller, rules,
outbox, delivery worker) in this process; one poll of the `wallboxes` group reads every wallbox
(fetch, validate, diff, rules, commit). The ceiling is a bare aiohttp client doing GET + orjson parse
of the same URLs at the same concurrency, measured in the same run, alternating with the bridge.

Scenarios: `unchanged` (only volatile fields move, as Podero's do) and `changing` (every 10th read
flips a wallbox between idle and charging: a rule fires, the event and its webhook delivery are
committed durably and POSTed to the simulator's sink before the round counts as done).

    .venv/bin/python bench/poll.py [--wallboxes 10000] [--concurrency 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web

from bench.common import (
    Measure,
    Sim,
    Stopwatch,
    add_fetch_workers,
    bridge_app,
    bridge_config,
    ceiling,
    quiet_logs,
    simulator,
)


async def _drained(app: web.Application, sim: Sim, expected_posts: int) -> None:
    """Wait until the outbox is empty (every delivery POSTed and recorded), then check the sink."""
    from bridge.app_keys import STORE

    while await app[STORE].outbox_depth() > 0:
        await asyncio.sleep(0.02)
    posts = (await sim.stats())["posts"]
    if posts < expected_posts:
        raise RuntimeError(f"the sink got {posts} webhooks, expected {expected_posts}")


async def run_scenario(
    name: str, *, wallboxes: int, concurrency: int, repeat: int, change_every: int, fetch_workers: int = 0
) -> list[tuple[Measure, Measure]]:
    from bridge.app_keys import POLLER, PROVIDERS

    pairs: list[tuple[Measure, Measure]] = []
    with simulator(wallboxes, change_every=change_every) as sim, tempfile.TemporaryDirectory() as tmp:
        config = bridge_config(Path(tmp), sim, concurrency=concurrency, fetch_workers=fetch_workers)
        async with bridge_app(config, Path(tmp) / "bench.db", wallboxes) as app:
            poller, provider = app[POLLER], app[PROVIDERS]["podero"]
            await poller.poll(provider, "wallboxes")  # the baseline: every snapshot stored once
            for _ in range(repeat):
                raw = await ceiling(sim, wallboxes, concurrency=concurrency)
                posts = (await sim.stats())["posts"]
                watch = Stopwatch(sim, app).start()
                summary = await poller.poll(provider, "wallboxes")
                polled = watch.stop(summary.observed)
                if summary.events:
                    await _drained(app, sim, posts + summary.events)
                ours = watch.stop(summary.observed)
                if summary.events:
                    # What the poll side (fetch … commit) cost, and what delivering its events cost on top.
                    per_event = (ours.cpu - polled.cpu) / summary.events * 1e6
                    print(
                        f"{name}: poll side {polled.cpu_us:.1f} µs CPU/poll until committed; delivering "
                        f"{summary.events} webhooks (claim, sign, POST, record) {per_event:.0f} µs CPU each"
                    )
                if summary.failed:
                    raise RuntimeError(f"{summary.failed} polls failed: the figures would be wrong")
                pairs.append((raw, ours))
                print(raw.line(f"{name}: raw aiohttp GET+parse"))
                print(ours.line(f"{name}: bridge (changed {summary.changed})"))
                if fetch_workers:
                    print(
                        f"{name}: of which {fetch_workers} fetch workers "
                        f"{ours.workers_cpu / ours.polls * 1e6:.1f} µs/poll, the bridge's process "
                        f"{(ours.cpu - ours.workers_cpu) / ours.polls * 1e6:.1f} µs/poll"
                    )
                print(
                    f"{name}: ratio {ours.rate / raw.rate:.2f} of the ceiling, CPU ×{ours.cpu_us / raw.cpu_us:.2f}"
                )
    return pairs


def summarise(name: str, pairs: list[tuple[Measure, Measure]]) -> dict[str, float]:
    ratios = [o.rate / r.rate for r, o in pairs]
    cpu = [o.cpu_us for _, o in pairs]
    raw_cpu = [r.cpu_us for r, _ in pairs]
    core = statistics.median(cpu) * 100_000 / 60 / 1e6
    print(
        f"== {name}: bridge/ceiling {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}); "
        f"bridge {statistics.median(o.rate for _, o in pairs):,.0f} polls/s vs raw "
        f"{statistics.median(r.rate for r, _ in pairs):,.0f}; CPU/poll {statistics.median(cpu):.1f} µs "
        f"(raw {statistics.median(raw_cpu):.1f} µs) → 100,000 wallboxes/min = {core:.2f} core"
    )
    return {"ratio": statistics.median(ratios), "cpu_us": statistics.median(cpu), "core_100k": core}


async def main_async(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    quiet_logs()
    out = {}
    for name, every in (("unchanged", 0), ("changing", 10)):
        if name not in args.scenarios.split(","):
            continue
        pairs = await run_scenario(
            name,
            wallboxes=args.wallboxes,
            concurrency=args.concurrency,
            repeat=args.repeat,
            change_every=every,
            fetch_workers=args.fetch_workers,
        )
        out[name] = summarise(name, pairs)
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallboxes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    add_fetch_workers(parser)
    parser.add_argument("--scenarios", default="unchanged,changing")
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
