"""Latency: from a poll response arriving at the bridge to its webhook arriving at the receiver.

The whole real bridge (`create_app`: SqliteStore, PoderoProvider, rules, Poller, DeliveryWorker,
WebhookChannel; logging at info, JSON to /dev/null) polls the Podero simulator, with one rule that
notifies every change of `charge_rate_w`. The benchmark drives the polls itself instead of the
scheduler so the event rate is exact: every `1 / polls-per-second` it gives `per-poll` wallboxes a
new charge rate, then runs one real poll (listing every wallbox). So events arrive at `rate` per
second, in poll-sized batches.

The two timestamps:
- **poll response arrived**: `time.monotonic_ns()` when the provider's `fetch` returns (the HTTP
  responses are in, parsed and validated; the rest of the pipeline is diff, rules, one durable
  commit, wake-up, claim, sign, POST);
- **webhook arrived**: stamped by the receiver (bench/receiver.py, its own process, same
  CLOCK_MONOTONIC) when the request is read. "Leaving the bridge" is this minus one loopback
  transfer (tens of µs).

The simulator runs in the benchmark's process (it shares the bridge's event loop and core, which
only makes the figures worse); the receiver in its own.

    .venv/bin/python bench/latency.py [--rate 1000] [--per-poll 20] [--wallboxes 40] [--seconds 5]
        [--repeat 3] [--synchronous FULL NORMAL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crash import ORG, served, write_config
from delivery import Receiver

from bridge import logs
from bridge.app import create_app
from bridge.app_keys import POLLER, PROVIDERS
from bridge.clock import SystemClock
from bridge.config_loader import load_config
from bridge.simulator.podero import PoderoSimulator

SECRET = "whsec_" + base64.b64encode(b"wattbridge-latency-secret-012345").decode()


@dataclass(frozen=True, slots=True)
class Latency:
    synchronous: str
    events: int
    seconds: float
    rate: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    commit_p50_ms: float  # of the above: poll response arrived -> its poll committed (the poller's part)
    commit_p99_ms: float
    # the rest: poll committed (poll() returned) -> webhook arrived (wake-up, claim, sign, POST)
    send_p50_ms: float
    send_p99_ms: float
    cpu_us: float  # process CPU (all threads: event loop, SQLite, the in-process simulator) per event
    lost: int


def _config(workdir: Path, podero_url: str, hook_url: str, synchronous: str) -> Path:
    return write_config(
        workdir,
        podero_url,
        hook_url,
        secret=SECRET,
        store=f'synchronous = "{synchronous}"',
        podero="max_requests_per_second = 100000\nmax_concurrency = 16",
    )


async def run_once(
    receiver: Receiver, http: aiohttp.ClientSession, *, rate: float, per_poll: int, wallboxes: int,
    seconds: float, synchronous: str,
) -> Latency:  # fmt: skip
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    boxes: list[str] = []
    for u in range(math.ceil(wallboxes / 10)):
        user = sim.add_user(email=f"user{u}@example.com")
        boxes += [sim.add_wallbox(user, charge_rate_w=0.0) for _ in range(min(10, wallboxes - len(boxes)))]
    with tempfile.TemporaryDirectory(prefix="wb-latency-") as tmp:
        async with served(sim.app()) as podero_url:
            config = load_config(_config(Path(tmp), podero_url, receiver.url, synchronous))
            app = create_app(config, start_scheduler=False)
            runner = web.AppRunner(app)
            await runner.setup()  # runs the app's cleanup contexts: store, providers, channels, delivery
            try:
                provider = app[PROVIDERS]["podero"]
                poller = app[POLLER]
                real_fetch = provider.fetch
                fetched_at: list[int] = []

                async def stamped_fetch(group: str, watches: Sequence[Any] = ()) -> Any:
                    result = await real_fetch(group, watches)
                    fetched_at.append(time.monotonic_ns())  # the poll response has arrived
                    return result

                provider.fetch = stamped_fetch  # type: ignore[method-assign]
                await poller.poll(provider, "wallboxes")  # the baseline read notifies nothing
                await receiver.arrivals(http)

                polls = max(1, round(rate * seconds / per_poll))
                step = per_poll / rate  # seconds between polls
                read_at: dict[str, int] = {}  # "wallbox:new value" -> when its poll response arrived
                done_at: dict[str, int] = {}  # "wallbox:new value" -> when its poll returned (committed)
                committed: list[float] = []  # per poll: response arrived -> poll() returned (committed)
                value, cursor = 0.0, 0
                cpu0 = time.process_time()
                t0 = time.monotonic()
                for k in range(polls):
                    changed = []
                    for _ in range(per_poll):
                        value += 1.0
                        box = boxes[cursor % len(boxes)]
                        cursor += 1
                        sim.update_wallbox(box, charge_rate_w=value)
                        changed.append(f"{box}:{value}")
                    fetched_at.clear()
                    await poller.poll(provider, "wallboxes")
                    returned = time.monotonic_ns()
                    committed.append((returned - fetched_at[0]) / 1e6)
                    for key in changed:
                        read_at[key] = fetched_at[0]
                        done_at[key] = returned
                    delay = t0 + (k + 1) * step - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elapsed = time.monotonic() - t0
                deadline = time.monotonic() + 30
                while await receiver.count(http) < len(read_at) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                cpu = time.process_time() - cpu0
                arrived = await receiver.arrivals(http)
            finally:
                await runner.cleanup()
    first: dict[str, int] = {}
    for at, key in arrived:
        first.setdefault(key, at)
    lat = sorted((first[k] - read_at[k]) / 1e6 for k in read_at if k in first)
    send = sorted((first[k] - done_at[k]) / 1e6 for k in done_at if k in first)

    def q(p: float, values: list[float] = lat) -> float:
        return round(values[min(len(values) - 1, int(p * len(values)))], 2) if values else float("nan")

    committed.sort()
    return Latency(
        synchronous=synchronous,
        commit_p50_ms=round(committed[len(committed) // 2], 2),
        commit_p99_ms=round(committed[min(len(committed) - 1, int(0.99 * len(committed)))], 2),
        events=len(read_at),
        seconds=round(elapsed, 2),
        rate=round(len(read_at) / elapsed, 1),
        p50_ms=q(0.5),
        p90_ms=q(0.9),
        p99_ms=q(0.99),
        send_p50_ms=q(0.5, send),
        send_p99_ms=q(0.99, send),
        cpu_us=round(cpu / max(1, len(read_at)) * 1e6, 1),
        max_ms=round(lat[-1], 2) if lat else float("nan"),
        lost=len(read_at) - len(lat),
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
                        seconds=args.seconds, synchronous=sync,
                    ))  # fmt: skip
                    print(rows[-1], file=sys.stderr)
    finally:
        receiver.close()
    return rows


def _on_uvloop(main: Any) -> Any:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: Sequence[str] | None = None) -> list[Latency]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, default=1000.0, help="events per second")
    p.add_argument("--per-poll", type=int, default=20, help="wallboxes changed before each poll")
    p.add_argument("--wallboxes", type=int, default=40, help="wallboxes listed by every poll")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"], choices=["FULL", "NORMAL"])
    p.add_argument("--no-logs", dest="logs", action="store_false", help="leave logging as it is")
    p.add_argument("--uvloop", action="store_true", help="run everything on uvloop (pip install uvloop)")
    args = p.parse_args(argv)
    if args.per_poll > args.wallboxes:
        p.error("--per-poll cannot exceed --wallboxes (a wallbox changes at most once per poll)")
    if args.logs:  # as `wattbridge run` logs (info, JSON), into /dev/null; tests keep their own logging
        logs.configure(level="info", fmt="json", stream=io.TextIOWrapper(open(os.devnull, "wb")))  # noqa: SIM115
    rows = asyncio.run(bench(args)) if not args.uvloop else _on_uvloop(bench(args))
    head = ("synchronous", "events", "per s", "p50 ms", "p90 ms", "p99 ms", "max ms", "commit p50/p99 ms",
            "send p50/p99 ms", "CPU µs/event")  # fmt: skip
    print(f"{head[0]:<12} " + " ".join(f"{h:>7}" for h in head[1:]) + " lost")
    for r in rows:
        print(
            f"{r.synchronous:<12} {r.events:>7} {r.rate:>7.0f} {r.p50_ms:>7.1f} {r.p90_ms:>7.1f} "
            f"{r.p99_ms:>7.1f} {r.max_ms:>7.1f} {r.commit_p50_ms:>7.1f}/{r.commit_p99_ms:<7.1f} "
            f"{r.send_p50_ms:>7.1f}/{r.send_p99_ms:<7.1f} {r.cpu_us:>7.0f} {r.lost:>4}"
        )
    print(f"{os.cpu_count()} cores; loadavg {os.getloadavg()}")
    return rows


if __name__ == "__main__":
    main()
