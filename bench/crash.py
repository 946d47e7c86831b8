"""Crash safety: SIGKILL a real `wattbridge run` at random instants while wallboxes change; nothing lost.

The Podero simulator (100 wallboxes over 10 users, discovered every poll) and a verifying webhook
sink run in this process; the bridge is a child process on one SQLite file. A rule notifies every
change of `charge_rate_w`. Each wallbox walks through steps 1..N, and the driver moves a wallbox to
its next step only when the notification of its current step has arrived, so every step must be
notified: a step that the bridge read but did not commit is read again after the restart, and one
that it committed is in the outbox. Meanwhile the child is killed with SIGKILL at random instants
(startup, polls, commits, sends) and restarted on the same file; then it drains and is stopped with
SIGTERM.

`tests/test_crash_safety.py` runs a short version in CI and asserts on the result; this script runs a
longer one and prints the figures:

    .venv/bin/python bench/crash.py [--kills 40] [--wallboxes 100] [--steps 20] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import math
import random
import signal
import socket
import sqlite3
import sys
import tempfile
import textwrap
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import aiohttp
import orjson
from aiohttp import web

from bridge.clock import SystemClock
from bridge.simulator.podero import PoderoSimulator
from bridge.simulator.sinks import ReceivedWebhook, WebhookSink

ORG = "00000000-0000-4000-8000-000000000001"
SECRET = "whsec_" + base64.b64encode(b"wattbridge-crash-test-secret-0123").decode()
POLL_S = 0.05  # how often the harness looks at the SQLite file (it cannot be notified by another process)


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """One genuine webhook the sink received: which wallbox step it notifies, with id and bytes."""

    resource_id: str
    step: int
    webhook_id: str
    body: bytes
    sequence: int


@dataclass(slots=True, kw_only=True)
class CrashRun:
    """What one run did and what arrived: the tests and the bench read their figures from here."""

    wallboxes: int
    steps: int
    kills: int = 0
    changes: int = 0
    changes_before_last_kill: int = 0  # how much of the work the kills interrupted
    receipts: list[Receipt] = field(default_factory=list)
    integrity: str = ""
    outbox: dict[str, int] = field(default_factory=dict)  # delivery status -> count, after the stop
    exit_code: int | None = None  # of the final SIGTERM stop
    seconds: float = 0.0
    drain_seconds: float = 0.0
    log: Path | None = None
    # (wallbox, step) pairs the driver made; each must be notified at least once.
    expected: set[tuple[str, int]] = field(default_factory=set)
    workers_seen: set[int] = field(default_factory=set)  # fetch worker pids of the killed bridges
    orphans: set[int] = field(default_factory=set)  # of those, still alive after the run

    @property
    def lost(self) -> set[tuple[str, int]]:
        return self.expected - {(r.resource_id, r.step) for r in self.receipts}

    @property
    def unexpected(self) -> list[Receipt]:
        return [r for r in self.receipts if (r.resource_id, r.step) not in self.expected]

    @property
    def duplicates(self) -> int:
        """Arrivals beyond the first of each webhook-id (at least once allows them)."""
        return len(self.receipts) - len({r.webhook_id for r in self.receipts})

    def ids_per_step(self) -> dict[tuple[str, int], set[str]]:
        ids: dict[tuple[str, int], set[str]] = defaultdict(set)
        for r in self.receipts:
            ids[(r.resource_id, r.step)].add(r.webhook_id)
        return ids

    def bodies_per_id(self) -> dict[str, set[bytes]]:
        bodies: dict[str, set[bytes]] = defaultdict(set)
        for r in self.receipts:
            bodies[r.webhook_id].add(r.body)
        return bodies

    def sequences_in_step_order(self) -> dict[str, list[int]]:
        """Per wallbox, the event sequence of steps 1..N (receivers order by it)."""
        seqs: dict[str, dict[int, int]] = defaultdict(dict)
        for r in self.receipts:
            seqs[r.resource_id][r.step] = r.sequence
        return {rid: [by_step[s] for s in sorted(by_step)] for rid, by_step in seqs.items()}


class BridgeProcess:
    """`python -m bridge run` as a child whose output goes to a file, never to our stdout or a pipe:
    an orphan holding the CI runner's pipe would hang the job."""

    def __init__(self, config: Path, log: IO[bytes], *, log_level: str = "warning") -> None:
        self._config = config
        self._log = log
        self._level = log_level
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "--log-format", "json", "--log-level", self._level,
            "run", "-c", str(self._config),
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            cwd=self._config.parent,
        )  # fmt: skip

    async def wait_ready(self, url: str, deadline: float) -> None:
        """Until `/readyz` answers 200: a SIGTERM that lands while Python is still importing meets
        the default handler (exit -15), which says nothing about the bridge's graceful stop."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(f"{url}/readyz") as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError("crash run: the restarted bridge never became ready")
                await asyncio.sleep(POLL_S)

    def children(self) -> set[int]:
        """The bridge's child processes now (its fetch workers), from /proc (Linux)."""
        if self.proc is None or self.proc.returncode is not None:
            return set()
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # pid (comm) state ppid …: comm may hold spaces, so split after its closing paren
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                    children.add(int(stat.parent.name))
        return children

    async def kill(self) -> None:
        """SIGKILL (no cleanup of any kind runs in the child) and reap it."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def stop(self, timeout: float) -> int | None:  # noqa: ASYNC109 -- a plain bound on the drain
        """SIGTERM and wait for the graceful exit; SIGKILL if it does not come within `timeout`."""
        if self.proc is None or self.proc.returncode is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return None


class Driver:
    """Moves each wallbox to its next step when the notification of its current step arrives."""

    def __init__(self, sim: PoderoSimulator, sink: WebhookSink, boxes: list[str], steps: int) -> None:
        self._sim, self._sink, self._steps = sim, sink, steps
        self.step = dict.fromkeys(boxes, 0)
        self.expected: set[tuple[str, int]] = set()
        self.receipts: list[Receipt] = []
        self.done = asyncio.Event()

    def advance(self, box: str) -> None:
        step = self.step[box] + 1
        self.step[box] = step
        self.expected.add((box, step))
        self._sim.update_wallbox(box, charge_rate_w=float(step))

    async def run(self) -> None:
        for box in self.step:
            self.advance(box)
        seen = 0
        while not self.done.is_set():
            arrived = await self._sink.wait_for(seen + 1, timeout=3600)
            for hook in arrived[seen:]:
                receipt = _receipt(hook)
                self.receipts.append(receipt)
                if self.step[receipt.resource_id] == receipt.step < self._steps:
                    self.advance(receipt.resource_id)
            seen = len(arrived)
            notified = {(r.resource_id, r.step) for r in self.receipts}
            if all(s == self._steps for s in self.step.values()) and self.expected <= notified:
                self.done.set()


def _receipt(hook: ReceivedWebhook) -> Receipt:
    data = hook.json["data"]
    [change] = data["changes"]
    return Receipt(
        resource_id=data["resource_id"],
        step=int(change["new"]),
        webhook_id=hook.webhook_id or "",
        body=hook.body,
        sequence=int(data["sequence"]),
    )


@contextlib.asynccontextmanager
async def served(app: web.Application) -> AsyncIterator[str]:
    # A short grace: a scripted slow answer still sleeping must not hold the harness at its end.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def _free_port() -> int:
    """A loopback port for the child's HTTP server, so the harness can ask it `/readyz`."""
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    workdir: Path,
    podero_url: str,
    hook_url: str,
    *,
    secret: str = SECRET,
    store: str = "",
    server: str = "",
    podero: str = "",
    partner: str = "",
    tail: str = "",
    watches: Sequence[tuple[str, str]] = (),
    store_url: str | None = None,
) -> Path:
    """The bridge these benchmarks run: Podero discovery (or, given `watches`, those (user id,
    wallbox id) watched by id), one rule notifying every change of `charge_rate_w`, one webhook
    channel `partner`. The keyword arguments are extra TOML lines for each table (and `tail` for
    whole tables), so each script states only what it tunes."""
    rules = workdir / "rules.toml"
    rules.write_text(
        textwrap.dedent("""
        [[rule]]
        id = "charge-rate-changed"
        source = "podero.wallbox"
        field = "charge_rate_w"
        changed = true
        type = "wallbox.charge_rate_changed"
        channels = ["partner"]
        """)
    )
    config = workdir / "config.toml"
    config.write_text(
        f"""
[store]
url = "{store_url or f"sqlite:///{workdir / 'bridge.db'}"}"
{store}
[server]
{server}
[rules]
paths = ["{rules}"]
[providers.podero]
kind = "podero"
base_url = "{podero_url}"
client_id = "sim-client"
client_secret = "sim-secret"
org_id = "{ORG}"
discover = {"false" if watches else "true"}
{podero}
[outbound]
allow = ["127.0.0.0/8"]
[channels.partner]
kind = "webhook"
url = "{hook_url}"
secret = "{secret}"
{partner}
{tail}
"""
        + "".join(
            f'[[providers.podero.wallboxes]]\nuser_id = "{u}"\nwallbox_id = "{b}"\n' for u, b in watches
        )
    )
    return config


def crash_config(
    workdir: Path,
    podero_url: str,
    hook_url: str,
    port: int,
    *,
    fetch_workers: int = 0,
    watches: Sequence[tuple[str, str]] = (),
) -> Path:
    """Short intervals and timeouts, so a claim cut short by SIGKILL expires in seconds (the lease is
    twice the slowest channel timeout, at least 5 s). Fetch workers read by-id watches only."""
    return write_config(
        workdir,
        podero_url,
        hook_url,
        server=f'listen = "127.0.0.1:{port}"\ndrain_timeout = "3s"',
        podero='poll_interval = "200ms"\nmax_requests_per_second = 1000\nmax_concurrency = 8\ntimeout = "2s"'
        f"\nfetch_workers = {fetch_workers}",
        partner='timeout = "1s"\nretry = ["0s", "200ms", "500ms", "1s", "2s", "5s", "10s", "10s"]',
        tail='[smtp]\ntimeout = "1s"',
        watches=watches,
    )


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return list(conn.execute(sql).fetchall())


async def _until(what: str, check: Callable[[], bool], deadline: float) -> None:
    """Poll a condition on the database (another process writes it: nothing to wait on) until true."""
    while True:
        if await asyncio.to_thread(check):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"crash run: {what} did not happen in time")
        await asyncio.sleep(POLL_S)


async def crash_run(
    workdir: Path,
    *,
    wallboxes: int = 100,
    steps: int = 10,
    kills: int = 10,
    seed: int = 0,
    kill_window: tuple[float, float] = (0.3, 2.0),
    budget: float = 50.0,
    fetch_workers: int = 0,
) -> CrashRun:
    """One run; raises TimeoutError when the baseline or the drain does not finish within `budget` s."""
    started = time.monotonic()
    deadline = started + budget
    rng = random.Random(seed)
    result = CrashRun(wallboxes=wallboxes, steps=steps, log=workdir / "bridge.log")
    db = workdir / "bridge.db"
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    boxes: list[str] = []
    watches: list[tuple[str, str]] = []
    for u in range(math.ceil(wallboxes / 10)):
        user = sim.add_user(email=f"user{u}@example.com")
        mine = [sim.add_wallbox(user, charge_rate_w=0.0) for _ in range(min(10, wallboxes - len(boxes)))]
        boxes += mine
        watches += [(user, b) for b in mine]
    sink = WebhookSink(SECRET)
    driver = Driver(sim, sink, boxes, steps)
    driving: asyncio.Task[None] | None = None
    with (workdir / "bridge.log").open("ab") as log:
        async with served(sim.app()) as podero_url, served(sink.app()) as sink_url:
            port = _free_port()
            config = crash_config(
                workdir,
                podero_url,
                f"{sink_url}/hooks/partner",
                port,
                fetch_workers=fetch_workers,
                watches=watches if fetch_workers else (),  # fetch workers read by-id watches
            )
            bridge = BridgeProcess(config, log)
            try:
                await bridge.start()
                # The first read of each wallbox is its baseline (it notifies nothing): change after it.
                q_baseline = (
                    "SELECT COUNT(*) FROM snapshots WHERE source = 'podero.wallbox' AND resource_id != ''"
                )
                await _until(
                    "the baseline",
                    lambda: _baseline_done(db, q_baseline, wallboxes),
                    deadline,
                )
                driving = asyncio.create_task(driver.run(), name="crash-driver")
                for _ in range(kills):
                    # Random instants: some land in start-up, others in polls, commits and sends.
                    await asyncio.sleep(rng.uniform(*kill_window))
                    result.workers_seen |= bridge.children()
                    await bridge.kill()
                    result.kills += 1
                    result.changes_before_last_kill = len(driver.expected)
                    await bridge.start()
                drain_from = time.monotonic()
                q_pending = "SELECT COUNT(*) FROM deliveries WHERE status = 'pending'"
                await _until("every notification", lambda: driver.done.is_set(), deadline)
                await _until("an empty outbox", lambda: _scalar(db, q_pending) == 0, deadline)
                result.drain_seconds = time.monotonic() - drain_from
                await bridge.wait_ready(f"http://127.0.0.1:{port}", deadline)
                result.exit_code = await bridge.stop(timeout=10)
            finally:
                await bridge.kill()
                if driving is not None:
                    driving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await driving
    # A killed bridge's fetch workers leave with it (bridge/poll/fetch_pool.py): give them a moment.
    orphans_by = time.monotonic() + 5.0
    while (
        alive := {p for p in result.workers_seen if Path(f"/proc/{p}").exists()}
    ) and time.monotonic() < orphans_by:
        await asyncio.sleep(POLL_S)
    result.orphans = alive
    result.changes = len(driver.expected)
    result.expected = set(driver.expected)
    result.receipts = list(driver.receipts)
    result.integrity = str(_scalar(db, "PRAGMA integrity_check"))
    rows = _query(db, "SELECT status, COUNT(*) FROM deliveries GROUP BY status")
    result.outbox = {str(status): int(str(n)) for status, n in rows}
    result.seconds = time.monotonic() - started
    return result


def _baseline_done(db: Path, sql: str, wallboxes: int) -> bool:
    try:
        return db.exists() and _scalar(db, sql) == wallboxes
    except sqlite3.OperationalError:  # the schema is not there yet
        return False


def _scalar(db: Path, sql: str) -> object:
    return _query(db, sql)[0][0]


def figures(run: CrashRun) -> str:
    return (
        f"wallboxes={run.wallboxes} steps={run.steps} kills={run.kills} changes={run.changes} "
        f"changes_before_last_kill={run.changes_before_last_kill} "
        f"notifications_expected={len(run.expected)} arrivals={len(run.receipts)} "
        f"lost={len(run.lost)} duplicates={run.duplicates} "
        f"ids_per_step_max={max((len(v) for v in run.ids_per_step().values()), default=0)} "
        f"bodies_per_id_max={max((len(v) for v in run.bodies_per_id().values()), default=0)} "
        f"integrity={run.integrity} outbox={orjson.dumps(run.outbox).decode()} "
        f"exit={run.exit_code} runtime_s={run.seconds:.1f} drain_s={run.drain_seconds:.1f} "
        f"fetch_workers_seen={len(run.workers_seen)} orphans={len(run.orphans)}"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--kills", type=int, default=40)
    p.add_argument("--wallboxes", type=int, default=100)
    p.add_argument("--steps", type=int, default=20, help="changes per wallbox")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--budget", type=float, default=600.0, help="seconds before giving up")
    p.add_argument("--fetch-workers", type=int, default=0, help="the provider's fetch_workers")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="wattbridge-crash-") as tmp:
        run = asyncio.run(
            crash_run(
                Path(tmp),
                wallboxes=args.wallboxes,
                steps=args.steps,
                kills=args.kills,
                seed=args.seed,
                budget=args.budget,
                fetch_workers=args.fetch_workers,
            )
        )
        print(figures(run))
    ok = (
        not run.lost
        and not run.unexpected
        and run.integrity == "ok"
        and not run.orphans
        and all(len(ids) == 1 for ids in run.ids_per_step().values())
        and all(len(bodies) == 1 for bodies in run.bodies_per_id().values())
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
