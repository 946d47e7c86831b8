"""The Podero simulator of bench/latency.py, in its own process, changing wallboxes on its own timer.

It serves the bundled `PoderoSimulator` app (the same one the bridge's tests use: OAuth, listings,
reads by id) on a loopback port, with `--wallboxes` wallboxes, ten per user, every `charge_rate_w`
at 0.0. It runs apart from the bridge so that its request handling, which costs about as much CPU
as the bridge's own client side, neither shares the bridge's event loop nor is counted in its CPU.

    python bench/latency_sim.py --wallboxes 40 --per-poll 20 --rate 1000

prints `READY <port>` once it listens, then waits for one line on stdin, `start <t0> <ticks>`:
at `t0 + k x step` (`time.monotonic_ns()`, CLOCK_MONOTONIC, the clock the benchmark and its
receiver read; k = 0 .. ticks-1; step = per-poll / rate seconds) it gives the next `--per-poll`
wallboxes, round robin, a new `charge_rate_w`: 1.0, 2.0, 3.0, ... (each value made once, so a
webhook names the one change it notifies). After the last tick it prints
`DONE <values made> <latest tick's lateness in ms>`. Closing its stdin stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

from aiohttp import web
from crash import ORG  # the organisation bench/crash.py's write_config puts in the bridge's config

from bridge.clock import SystemClock
from bridge.simulator.podero import PoderoSimulator

PER_USER = 10


def boxes(n: int) -> list[tuple[str, str]]:
    """(user id, wallbox id) of the n simulated wallboxes, ten per user. Fixed ids, so the benchmark
    can register them as by-id watches without asking this process."""
    return [
        (f"00000000-0000-4000-9000-{i // PER_USER:012x}", f"00000000-0000-4000-a000-{i:012x}")
        for i in range(n)
    ]


def build(wallboxes: int) -> PoderoSimulator:
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    users: set[str] = set()
    for user, box in boxes(wallboxes):
        if user not in users:
            users.add(user)
            sim.add_user(user_id=user, email=f"{user}@example.com")
        sim.add_wallbox(user, wallbox_id=box, charge_rate_w=0.0)
    return sim


async def change(
    sim: PoderoSimulator, wallboxes: int, per_poll: int, rate: float, t0: int, ticks: int
) -> str:
    """The ticks, on an absolute schedule (a late tick does not push the later ones back)."""
    ids = [box for _, box in boxes(wallboxes)]
    step_ns = round(per_poll / rate * 1e9)
    value, cursor, late = 0.0, 0, 0
    for k in range(ticks):
        due = t0 + k * step_ns
        delay = due - time.monotonic_ns()
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        late = max(late, time.monotonic_ns() - due)
        for _ in range(per_poll):
            value += 1.0
            sim.update_wallbox(ids[cursor % wallboxes], charge_rate_w=value)
            cursor += 1
    return f"DONE {int(value)} {late / 1e6:.2f}"


async def serve(args: argparse.Namespace) -> None:
    sim = build(args.wallboxes)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(f"READY {runner.addresses[0][1]}", flush=True)
        line = (await asyncio.to_thread(sys.stdin.readline)).split()
        if len(line) != 3 or line[0] != "start":
            return  # stdin closed (or garbage) before the start: the benchmark gave up
        closed = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
        ticker = asyncio.ensure_future(
            change(sim, args.wallboxes, args.per_poll, args.rate, int(line[1]), int(line[2]))
        )
        await asyncio.wait({closed, ticker}, return_when=asyncio.FIRST_COMPLETED)
        if ticker.done():
            print(ticker.result(), flush=True)
            await closed  # keep serving until the benchmark closes our stdin
        else:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    finally:
        await runner.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wallboxes", type=int, required=True)
    p.add_argument("--per-poll", type=int, required=True, help="wallboxes changed per tick")
    p.add_argument("--rate", type=float, required=True, help="values made per second")
    asyncio.run(serve(p.parse_args()))


if __name__ == "__main__":
    main()
