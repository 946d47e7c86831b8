"""The HTTP surface under hostile clients: /healthz latency and RSS of a real `wattbridge run` while
200 slow-loris sockets trickle their headers and 1,000 more connections sit open, then after.

The bridge is a child process (its CPU and memory are its own) on loopback, polling a Podero
simulator in this process, with the default `[server]` limits unless told otherwise. Three phases of
`--seconds` each: **before** (quiet), **during** (the attack: every slow socket sends one header byte
every `--trickle` seconds; the idle ones send nothing), **after** (the attackers gone). In each phase
a probe asks `/healthz` on a fresh connection every 50 ms. Reported per phase: probe latency p50 /
p99 / max and failures, the child's RSS, and how many attacking sockets the server had closed.

    .venv/bin/python bench/slowloris.py [--slow 200] [--idle 1000] [--seconds 10] [--trickle 2]
        [--keepalive 15s]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import proc_rss
from bench.crash import ORG, BridgeProcess, _free_port, served, write_config
from bridge.clock import SystemClock
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.sinks import WebhookSink


@dataclass
class Phase:
    name: str
    latencies: list[float] = field(default_factory=list)
    failures: int = 0
    rss: int = 0

    def line(self) -> str:
        if not self.latencies:
            return f"{self.name:>7}: no answer at all ({self.failures} failures)"
        ms = sorted(x * 1000 for x in self.latencies)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return (
            f"{self.name:>7}: /healthz p50 {statistics.median(ms):6.2f} ms, p99 {p99:6.2f} ms, "
            f"max {ms[-1]:7.2f} ms over {len(ms)} probes, {self.failures} failed; RSS {self.rss / 2**20:.1f} MiB"
        )


async def probe(url: str, seconds: float, phase: Phase, pid: int) -> None:
    end = time.monotonic() + seconds
    timeout = aiohttp.ClientTimeout(total=5)
    while time.monotonic() < end:
        started = time.perf_counter()
        try:  # a fresh connection each time: what a load balancer's health check does
            async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as resp:
                await resp.read()
                ok = resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            ok = False
        if ok:
            phase.latencies.append(time.perf_counter() - started)
        else:
            phase.failures += 1
        phase.rss = max(phase.rss, proc_rss(pid))
        await asyncio.sleep(0.05)


async def attack(port: int, slow: int, idle: int, trickle: float, stop: asyncio.Event) -> tuple[int, int]:
    """Open the sockets and keep the slow ones trickling until `stop`; returns (opened, closed by server)."""
    conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]] = []
    for i in range(slow + idle):
        with contextlib.suppress(OSError):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            is_slow = i < slow
            if is_slow:
                w.write(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\nX-Slow: ")
            conns.append((r, w, is_slow))
    while not stop.is_set():
        for r, w, is_slow in conns:
            if is_slow and not r.at_eof() and not w.is_closing():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    w.write(b"a")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), trickle)
    closed = 0
    for r, w, _ in conns:
        with contextlib.suppress(TimeoutError, ConnectionError):
            if await asyncio.wait_for(r.read(1), 0.01) == b"":
                closed += 1
        w.close()
    return len(conns), closed


@dataclass
class Result:
    phases: list[Phase]
    opened: int
    closed: int
    exit_code: int | None


async def run(args: argparse.Namespace) -> Result:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, args.slow + args.idle + 512)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    user = sim.add_user(email="ops@example.com")
    for _ in range(10):
        sim.add_wallbox(user)
    sink = WebhookSink("whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "bridge.log").open("ab") as log:
        async with served(sim.app()) as podero_url, served(sink.app()) as sink_url:
            port = _free_port()
            config = write_config(
                Path(tmp),
                podero_url,
                f"{sink_url}/hooks/partner",
                server=f'listen = "127.0.0.1:{port}"\nkeepalive_timeout = "{args.keepalive}"',
                podero='poll_interval = "1s"',
            )
            bridge = BridgeProcess(config, log)
            await bridge.start()
            assert bridge.proc is not None
            url = f"http://127.0.0.1:{port}"
            try:
                await bridge.wait_ready(url, time.monotonic() + 30)
                phases = [Phase("before"), Phase("during"), Phase("after")]
                await probe(f"{url}/healthz", args.seconds, phases[0], bridge.proc.pid)
                stop = asyncio.Event()
                attacking = asyncio.create_task(attack(port, args.slow, args.idle, args.trickle, stop))
                await asyncio.sleep(1.0)  # the sockets are open
                await probe(f"{url}/healthz", args.seconds, phases[1], bridge.proc.pid)
                stop.set()
                opened, closed = await attacking
                await probe(f"{url}/healthz", args.seconds, phases[2], bridge.proc.pid)
                exit_code = await bridge.stop(timeout=15)
            finally:
                await bridge.kill()
    return Result(phases=phases, opened=opened, closed=closed, exit_code=exit_code)


def main(argv: list[str] | None = None) -> Result:
    args = parse(argv)
    result = asyncio.run(run(args))
    print(
        f"wattbridge run, keepalive_timeout {args.keepalive}; attack: {args.slow} slow-loris sockets "
        f"(a header byte every {args.trickle:g} s) + {args.idle} idle connections, {args.seconds:g} s a phase"
    )
    for phase in result.phases:
        print(phase.line())
    print(
        f"attack sockets opened {result.opened}, closed by the server by the end of the attack: {result.closed}"
    )
    print(f"graceful stop afterwards: exit {result.exit_code}")
    return result


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slow", type=int, default=200)
    p.add_argument("--idle", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--trickle", type=float, default=2.0)
    p.add_argument("--keepalive", default="15s")
    return p.parse_args(argv)


if __name__ == "__main__":
    raise SystemExit(0 if main().exit_code == 0 else 1)
