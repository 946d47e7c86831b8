"""Poll CPU versus Node-RED: the same simulator, the same wallboxes, the same rate, the same run.

Node-RED (npm `node-red`, installed into bench/.node-red/, outside git) runs the committed flow
bench/nodered_flow.json: inject every 10 ms → function (the next BATCH wallbox URLs) → http request
GET (parsed JSON) → filter "report by exception" (rbei on `payload.is_charging`, per wallbox) → change
(webhook URL) → http request POST. Its CPU per poll is read from /proc/PID/stat over a window. Then the
bridge polls the same wallboxes paced at the rate Node-RED reached (its provider rate limit), with
the same 10 % changing, and its CPU per poll (this process, all threads) is measured the same way.

    (cd bench/.node-red && npm install node-red)      # once
    .venv/bin/python bench/nodered.py [--wallboxes 3000] [--batch 15] [--seconds 10] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from bench.common import (
    HERE,
    Sim,
    Stopwatch,
    add_fetch_workers,
    bridge_app,
    bridge_config,
    proc_cpu,
    quiet_logs,
    simulator,
)
from bench.simserver import ORG, TOKEN

RED_JS = HERE / ".node-red" / "node_modules" / "node-red" / "red.js"


def node_red_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not RED_JS.exists():
        return (
            f"Node-RED is not installed: run `cd bench/.node-red && npm install node-red` ({RED_JS} missing)"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def node_red(sim: Sim, wallboxes: int, batch: int, seconds: float) -> tuple[float, float, int]:
    """(polls/s, µs CPU per poll, webhooks POSTed) of Node-RED over a `seconds` window."""
    with tempfile.TemporaryDirectory() as user_dir:
        env = {
            **os.environ,
            "WALLBOXES": str(wallboxes),
            "BATCH": str(batch),
            "SIM_URL": sim.base_url,
            "ORG": ORG,
            "TOKEN": TOKEN,
            "HOOK_URL": f"{sim.base_url}/hooks/nodered",
            "NODE_RED_FLOW": str(HERE / "nodered_flow.json"),
            "NODE_RED_PORT": str(_free_port()),
        }
        cmd = ["node", str(RED_JS), "--settings", str(HERE / "nodered_settings.js"), "--userDir", user_dir]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # Warm up: one full pass so "report by exception" has seen every wallbox once.
            start = time.monotonic()
            while (await sim.stats())["gets"] < wallboxes * 1.5:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"Node-RED exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}"
                    )
                if time.monotonic() - start > 120:
                    raise RuntimeError("Node-RED did not poll the simulator within 120 s")
                await asyncio.sleep(0.2)
            before, cpu = await sim.stats(), proc_cpu(proc.pid)
            t0 = time.perf_counter()
            await asyncio.sleep(seconds)
            after, cpu2 = await sim.stats(), proc_cpu(proc.pid)
            elapsed = time.perf_counter() - t0
        finally:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()
    polls = after["gets"] - before["gets"]
    return polls / elapsed, (cpu2 - cpu) / polls * 1e6, after["posts"] - before["posts"]


async def bridge(
    sim: Sim, wallboxes: int, rate: float, rounds: int, fetch_workers: int = 0
) -> tuple[float, float, int]:
    """(polls/s, µs CPU per poll, webhooks POSTed) of the bridge paced at `rate` polls/s (its fetch
    workers' CPU included)."""
    from bridge.app_keys import POLLER, PROVIDERS, STORE

    with tempfile.TemporaryDirectory() as tmp:
        config = bridge_config(Path(tmp), sim, concurrency=50, rps=rate, fetch_workers=fetch_workers)
        async with bridge_app(config, Path(tmp) / "bench.db", wallboxes) as app:
            poller, provider = app[POLLER], app[PROVIDERS]["podero"]
            await poller.poll(provider, "wallboxes")  # baseline
            posts = (await sim.stats())["posts"]
            watch = Stopwatch(sim, app).start()
            polls = events = 0
            for _ in range(rounds):
                summary = await poller.poll(provider, "wallboxes")
                polls += summary.observed
                events += summary.events
            while await app[STORE].outbox_depth() > 0:
                await asyncio.sleep(0.02)
            m = watch.stop(polls)
            return m.rate, m.cpu_us, (await sim.stats())["posts"] - posts


async def main_async(args: argparse.Namespace) -> dict[str, float] | None:
    missing = node_red_missing()
    if missing:
        print(f"Node-RED comparison skipped: {missing}")
        return None
    quiet_logs()
    ratios = []
    out: dict[str, float] = {}
    for _ in range(args.repeat):
        with simulator(args.wallboxes, change_every=10) as sim:
            red_rate, red_cpu, red_posts = await node_red(sim, args.wallboxes, args.batch, args.seconds)
            print(
                f"Node-RED : {red_rate:>7,.0f} polls/s  {red_cpu:>6.1f} µs CPU/poll  ({red_posts} webhooks POSTed)"
            )
            rounds = max(1, round(red_rate * args.seconds / args.wallboxes))
            rate, cpu, posts = await bridge(sim, args.wallboxes, red_rate, rounds, args.fetch_workers)
            print(
                f"Wattbridge: {rate:>7,.0f} polls/s  {cpu:>6.1f} µs CPU/poll  ({posts} webhooks, durable + signed)"
            )
            ratios.append(cpu / red_cpu)
            print(f"Wattbridge CPU per poll = {cpu / red_cpu:.2f} × Node-RED's (target ≤ 0.5)")
            out = {"red_rate": red_rate, "red_cpu_us": red_cpu, "rate": rate, "cpu_us": cpu}
    out["ratio"] = sorted(ratios)[len(ratios) // 2]
    print(
        f"== Node-RED: median ratio {out['ratio']:.2f} over {len(ratios)} run(s): {', '.join(f'{r:.2f}' for r in ratios)}"
    )
    return out


def main(argv: list[str] | None = None) -> dict[str, float] | None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wallboxes", type=int, default=3000)
    parser.add_argument("--batch", type=int, default=15, help="requests per 10 ms tick (15 → 1,500/s)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2)
    add_fetch_workers(parser)
    return asyncio.run(main_async(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
