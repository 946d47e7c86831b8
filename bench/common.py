"""Shared harness of the poll benchmarks: the simulator process, the raw ceiling, CPU accounting.

Every benchmark measures the bridge and the raw ceiling for the same work in the same run, so the
figure that matters is the ratio, which holds on a busy machine where absolute numbers do not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.simserver import ORG, TOKEN, user_id, wallbox_id, wallbox_path

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def proc_cpu(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (every core, all but idle and iowait), /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def postgres_cpu() -> float:
    """utime + stime of every PostgreSQL process on this machine (server and backends), in seconds."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() == "postgres":
                    total += proc_cpu(int(d.name))
            except OSError:  # gone meanwhile
                continue
    return total


def proc_rss(pid: int) -> int:
    """Resident set size in bytes, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass(slots=True)
class Sim:
    """The simulator child process (bench/simserver.py) and its base URL."""

    proc: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    async def stats(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as s, s.get(f"{self.base_url}/_stats") as r:
            data: dict[str, Any] = orjson.loads(await r.read())
            return data


@contextlib.contextmanager
def simulator(wallboxes: int, *, change_every: int = 0) -> Iterator[Sim]:
    cmd = [sys.executable, str(HERE / "simserver.py"), "--port", "0", "--wallboxes", str(wallboxes)]
    cmd += ["--change-every", str(change_every)]
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"simulator did not start: {line!r}")
        yield Sim(proc=proc, port=int(line.split()[1]))
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass(slots=True)
class Measure:
    """Polls done, wall seconds, and CPU seconds of this process and of the simulator."""

    polls: int
    seconds: float
    cpu: float  # the bridge's, fetch workers included
    sim_cpu: float
    workers_cpu: float = 0.0  # of which the fetch workers

    @property
    def rate(self) -> float:
        return self.polls / self.seconds

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.polls * 1e6

    @property
    def sim_load(self) -> float:
        """Share of one core the simulator used: near 1.0 means it was the bottleneck."""
        return self.sim_cpu / self.seconds

    def line(self, name: str) -> str:
        return (
            f"{name:<34} {self.rate:>8,.0f} polls/s  {self.cpu_us:>6.1f} µs CPU/poll  "
            f"(sim at {self.sim_load:.0%} of a core)"
        )


class Stopwatch:
    """Wall, own CPU (plus the bridge's fetch workers', given `app`) and simulator CPU between
    `start()` and `stop(polls)`."""

    def __init__(self, sim: Sim, app: Any = None) -> None:
        self._sim = sim
        self._app = app
        self._wall = self._cpu = self._scpu = 0.0
        self._workers: dict[int, float] = {}

    def start(self) -> Stopwatch:
        self._wall, self._cpu, self._scpu = time.perf_counter(), time.process_time(), self._sim.cpu()
        self._workers = workers_cpu(self._app)
        return self

    def stop(self, polls: int) -> Measure:
        workers = sum(cpu - self._workers.get(pid, 0.0) for pid, cpu in workers_cpu(self._app).items())
        return Measure(
            polls=polls,
            seconds=time.perf_counter() - self._wall,
            cpu=time.process_time() - self._cpu + workers,
            sim_cpu=self._sim.cpu() - self._scpu,
            workers_cpu=workers,
        )


def add_fetch_workers(parser: argparse.ArgumentParser) -> None:
    """`--fetch-workers N`: the benchmarked provider's `fetch_workers` (bridge/poll/fetch_pool.py)."""
    parser.add_argument(
        "--fetch-workers",
        type=int,
        default=0,
        help="the provider's fetch_workers (0: in the bridge's process)",
    )


def workers_cpu(app: Any) -> dict[int, float]:
    """CPU seconds so far of each fetch worker process of the bridge `app` (none: {})."""
    if app is None:
        return {}
    from bridge.app_keys import FETCH_POOLS

    out = {}
    for pool in app.get(FETCH_POOLS, {}).values():
        for pid in pool.pids():
            with contextlib.suppress(OSError):  # a worker that just exited
                out[pid] = proc_cpu(pid)
    return out


async def ceiling(sim: Sim, wallboxes: int, *, concurrency: int, rounds: int = 1) -> Measure:
    """The raw ceiling: a bare aiohttp client, GET + orjson parse of the same bodies, same concurrency."""
    urls = [f"{sim.base_url}{wallbox_path(i)}?include_deleted=true" for i in range(wallboxes)]
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Bench-Ceiling": "1"}
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker(mine: list[str]) -> None:
            for url in mine:
                async with session.get(url) as resp:
                    orjson.loads(await resp.read())

        # warm the connections first, then measure
        await asyncio.gather(*(worker(urls[i::concurrency][:2]) for i in range(concurrency)))
        watch = Stopwatch(sim).start()
        for _ in range(rounds):
            await asyncio.gather(*(worker(urls[i::concurrency]) for i in range(concurrency)))
        return watch.stop(wallboxes * rounds)


RULES = """
[[rule]]
id = "charging-changed"
description = "A wallbox started or stopped charging"
source = "podero.wallbox"
field = "is_charging"
type = "wallbox.charging"
channels = ["partner"]
"""


def bridge_config(
    tmp: Path, sim: Sim, *, concurrency: int, rps: float = 1e6, interval: str = "60s", fetch_workers: int = 0
) -> Any:
    """A Config polling every simulated wallbox by id and delivering to the simulator's POST sink."""
    from bridge.config.models import Config

    rules_dir = tmp / "rules"
    rules_dir.mkdir(exist_ok=True)
    (rules_dir / "bench.toml").write_text(textwrap.dedent(RULES))
    data: dict[str, Any] = {
        "store": {"url": f"sqlite:///{tmp / 'bench.db'}", "synchronous": "FULL"},
        "server": {"listen": "127.0.0.1:0"},
        "rules": {"paths": [str(rules_dir / "*.toml")]},
        "providers": {
            "podero": {
                "kind": "podero",
                "base_url": sim.base_url,
                "client_id": "sim-client",
                "client_secret": "sim-secret",
                "org_id": ORG,
                "max_requests_per_second": rps,
                "max_concurrency": concurrency,
                "poll_interval": interval,
                "fetch_workers": fetch_workers,
            }
        },
        "channels": {
            "partner": {"kind": "webhook", "url": f"{sim.base_url}/hooks/energy", "secret": WEBHOOK_SECRET}
        },
        "outbound": {"allow": ["127.0.0.0/8"]},  # the receiver is the local simulator
    }
    return Config.model_validate(data).model_copy(update={"base_dir": str(tmp)})


def add_watches(db_path: Path, provider: str, wallboxes: int) -> None:
    """Register one watch per simulated wallbox (as a partner's onboarding flow would), in bulk:
    the store's `add_watch` is one durable transaction each, far too slow for 250,000 set-up rows."""
    import sqlite3
    from datetime import UTC, datetime

    from bridge.store.sqlite_sql import Q_WATCH_UPSERT, _json, _ts

    now = _ts(datetime.now(UTC))
    rows = [
        (provider, "podero.wallbox", wallbox_id(i), _json({"user_id": user_id(i)}), now)
        for i in range(wallboxes)
    ]
    with contextlib.closing(sqlite3.connect(db_path)) as db, db:
        db.executemany(Q_WATCH_UPSERT, rows)


@contextlib.asynccontextmanager
async def bridge_app(config: Any, db_path: Path, wallboxes: int) -> AsyncIterator[Any]:
    """The bridge's real app (no scheduler: the benchmark drives polls) on a fresh store holding one
    watch per simulated wallbox; started and cleaned up as `wattbridge run` does."""
    from aiohttp import web

    from bridge.app import create_app
    from bridge.store.sqlite import SqliteStore

    store = SqliteStore(db_path)
    await store.open()  # creates the schema, so the watches can be bulk-inserted beside it
    await store.close()
    add_watches(db_path, "podero", wallboxes)
    from bridge import heap

    app = create_app(config, start_scheduler=False)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    heap.settle()  # as `wattbridge run` does once started
    try:
        yield app
    finally:
        heap.release()
        await runner.cleanup()


def quiet_logs() -> None:
    """Benchmarks measure the pipeline, not a terminal: log warnings and up only."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
