"""Delivery throughput: durable webhook deliveries/s versus a bare aiohttp POST loop and Alertmanager.

Three contenders, in the same run, against the same receiver (bench/receiver.py, its own process):

- **Wattbridge**: the real SqliteStore (a temp file, `synchronous=FULL` unless told otherwise), the
  real DeliveryWorker and WebhookChannel on the system clock, logging at info as `wattbridge run`
  does (JSON to /dev/null). Each notification is one PollResult (snapshot + event + delivery)
  committed durably as the poller commits (its delivery leased to the worker and handed over, or
  claimed when the worker has no room), signed (Standard Webhooks), POSTed and its attempt recorded.
  The results are built and rendered before the clock starts (rendering belongs to the poller).
- **ceiling**: a bare aiohttp POST loop of the same bodies at the same concurrency, no store, no
  signing, no logging: what the network and the receiver allow.
- **Alertmanager** (`prometheus-alertmanager` from Debian, when installed): on loopback, clustering
  off, one webhook receiver, `group_wait: 0s`, grouped by a unique label so every alert is its own
  notification; alerts are POSTed to `/api/v2/alerts`. Its CPU comes from /proc/<pid>/stat.

Two loads: a **burst** (all N handed over at once; rate = N / time until the last one is recorded,
p99 = arrival - hand-over) and **paced** (R per second; latency = arrival - the scheduled hand-over
time). CPU per notification = process CPU time (all threads) / notifications. `rx core` is the
receiver's CPU over the same run as a share of one core: near 1.0, the receiver sets the rate.

    .venv/bin/python bench/delivery.py [--n 5000] [--rate 1000] [--paced-n 5000] [--repeat 3]
        [--synchronous FULL NORMAL] [--concurrency 64] [--no-alertmanager] [--json out.json]
        [--group-window-ms MS]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bridge import __version__, heap, logs
from bridge.channels.base import RenderContext
from bridge.channels.webhook import WebhookChannel
from bridge.clock import SystemClock
from bridge.config.models import WebhookChannelConfig
from bridge.deliver.worker import DeliveryWorker
from bridge.model import Change, Delivery, Event, PollResult, ResourceKey, Snapshot, delivery_id, event_id
from bridge.store.sqlite import SqliteStore

SECRET = "whsec_" + base64.b64encode(b"wattbridge-bench-secret-0123456789").decode()
HERE = Path(__file__).resolve().parent
COMMIT_CHUNK = 100  # a burst is handed over as poll batches of this many results (group commit)
ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
TICK = os.sysconf("SC_CLK_TCK")
# --group-window-ms: the SQLite store's group-commit window (None: the store's default; the code
# before group commit takes no such argument, so nothing is passed unless asked).
GROUP_WINDOW_S: float | None = None


@dataclass(frozen=True, slots=True)
class Figures:
    who: str
    load: str  # burst | paced
    n: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_us: float  # CPU per notification
    lost: int
    rx_core: float = 0.0  # the receiver's CPU over the run, as a share of one core (1.0: saturated)


# -- the receiver -------------------------------------------------------------------------------------


class Receiver:
    """bench/receiver.py as a child process; closing its stdin stops it."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "receiver.py"), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def arrivals(self, http: aiohttp.ClientSession) -> list[tuple[int, str]]:
        async with http.get(f"http://127.0.0.1:{self.port}/arrivals") as resp:
            return [(int(t), str(k)) for t, k in orjson.loads(await resp.read())]

    async def count(self, http: aiohttp.ClientSession) -> int:
        async with http.get(f"http://127.0.0.1:{self.port}/count") as resp:
            return int(await resp.text())

    def cpu(self) -> float:
        """The receiver's CPU seconds so far (a burst that keeps it at ~1 core is bound by it)."""
        return _proc_cpu(self.proc.pid)

    def close(self) -> None:
        stop_child(self.proc)


def stop_child(proc: subprocess.Popen[Any]) -> None:
    """Close a child's stdin (the bench children's signal to stop); kill it if it is not gone in 5 s."""
    if proc.stdin is not None:
        proc.stdin.close()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def _stats(
    who: str, load: str, n: int, t0: int, t_end: int, sent_at: dict[str, int], arrived: list[tuple[int, str]],
    cpu_s: float, rx_cpu_s: float = 0.0,
) -> Figures:  # fmt: skip
    first: dict[str, int] = {}
    for at, key in arrived:
        if key in sent_at and key not in first:
            first[key] = at
    lat = sorted((first[k] - sent_at[k]) / 1e6 for k in first)
    seconds = (t_end - t0) / 1e9

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return Figures(
        who=who,
        load=load,
        n=n,
        seconds=round(seconds, 3),
        rate=round(n / seconds, 1),
        p50_ms=round(q(0.50), 2),
        p99_ms=round(q(0.99), 2),
        max_ms=round(lat[-1], 2) if lat else float("nan"),
        cpu_us=round(cpu_s / n * 1e6, 1),
        lost=n - len(first),
        rx_core=round(rx_cpu_s / seconds, 2),
    )


# -- Wattbridge ---------------------------------------------------------------------------------------

T_EVENT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def _results(channel: WebhookChannel, n: int, run: str) -> list[PollResult]:
    """N poll results, each one changed wallbox with one event and one rendered delivery."""
    now = datetime.now(UTC)
    out = []
    for i in range(n):
        key = ResourceKey(source="podero.wallbox", provider="podero", resource_id=f"{run}-wb-{i}")
        state = {"is_charging": True, "charge_rate_w": 7400 + i % 100, "vehicle": "connected"}
        event = Event(
            id=event_id("charging-started", key, 1, T_EVENT),
            rule_id="charging-started",
            type="wallbox.charging_started",
            status="firing",
            severity="info",
            key=key,
            sequence=1,
            changes=(Change(field="is_charging", old=False, new=True),),
            state=state,
            occurred_at=T_EVENT,
        )
        delivery = Delivery(
            id=delivery_id(event.id, channel.name),
            event_id=event.id,
            channel=channel.name,
            body=channel.render(event, RenderContext(old={"is_charging": False})),
            next_attempt_at=now,
            created_at=now,
        )
        snapshot = Snapshot(key=key, state=state, digest=f"d{i}", sequence=1, updated_at=now)
        out.append(PollResult(snapshot=snapshot, events=(event,), deliveries=(delivery,)))
    return out


@contextlib.asynccontextmanager
async def _bridge(
    receiver: Receiver, synchronous: str, concurrency: int
) -> AsyncIterator[tuple[SqliteStore, WebhookChannel, DeliveryWorker]]:
    with tempfile.TemporaryDirectory(prefix="wb-bench-") as tmp:
        window = {} if GROUP_WINDOW_S is None else {"group_window_s": GROUP_WINDOW_S}
        store = SqliteStore(Path(tmp) / "bench.db", synchronous=synchronous, **window)  # type: ignore[arg-type]
        await store.open()
        try:
            # As app.py builds it: one session for the channels, the app's User-Agent.
            async with aiohttp.ClientSession(headers={"User-Agent": f"Wattbridge/{__version__}"}) as session:
                raw = {"kind": "webhook", "url": receiver.url, "secret": SECRET}
                cfg = WebhookChannelConfig.model_validate(raw)
                channel = WebhookChannel("partner", cfg, session=session, clock=SystemClock())
                worker = DeliveryWorker(
                    store, {"partner": channel}, clock=SystemClock(), concurrency=concurrency,
                    lease=timedelta(seconds=20),
                )  # fmt: skip
                heap.settle()  # as `wattbridge run` does once started
                try:
                    yield store, channel, worker
                finally:
                    heap.release()
                    await channel.close()  # its kept-alive connections
        finally:
            await store.close()


async def _until_done(worker: DeliveryWorker, store: SqliteStore, n: int, within_s: float) -> int:
    """Wait until N attempts are recorded (outbox empty); returns the monotonic ns at that moment."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        # The in-memory count first: asking the store every 2 ms would bill its thread hops to the bridge.
        if worker.attempts_made >= n and await store.outbox_depth() == 0:
            return time.monotonic_ns()
        await asyncio.sleep(0.002 if worker.attempts_made < n else 0.0005)
    raise TimeoutError(f"Wattbridge recorded {worker.attempts_made} of {n} attempts in {within_s:g}s")


async def _handover(
    results: Sequence[PollResult], rate: float | None, commit: Any, notify: Any
) -> tuple[int, dict[str, int]]:
    """Hand results over: all at once in chunks (rate None) or paced; returns t0 and each id's time."""
    sent_at: dict[str, int] = {}
    t0 = time.monotonic_ns()
    if rate is None:
        for i in range(0, len(results), COMMIT_CHUNK):
            chunk = results[i : i + COMMIT_CHUNK]
            for r in chunk:
                sent_at[r.deliveries[0].id] = t0
            await commit(chunk)
            notify()
        return t0, sent_at
    step = 1e9 / rate
    i = 0
    while i < len(results):
        now = time.monotonic_ns()
        due = min(len(results), int((now - t0) / step) + 1)
        if due > i:
            chunk = results[i:due]
            for k, r in enumerate(chunk, start=i):
                sent_at[r.deliveries[0].id] = t0 + int(k * step)
            await commit(chunk)
            notify()
            i = due
        else:
            await asyncio.sleep((t0 + i * step - now) / 1e9)
    return t0, sent_at


def _committer(store: SqliteStore, worker: DeliveryWorker) -> Any:
    """Commit as the poller does: fresh deliveries leased to the worker, handed over once committed
    (what it has no room for is claimed from the store)."""
    if not hasattr(worker, "lease_fresh"):  # the code before the hand-over (A/B runs): commit, notify

        async def commit_notify(chunk: Sequence[PollResult]) -> None:
            await store.commit(chunk)
            worker.notify()

        return commit_notify

    async def commit(chunk: Sequence[PollResult]) -> None:
        lease = worker.lease_fresh(chunk)
        committed: Sequence[PollResult] = ()
        try:
            await store.commit(lease.results)
            committed = lease.results
        finally:
            worker.hand_over(lease, committed)

    return commit


async def run_wattbridge(
    receiver: Receiver, http: aiohttp.ClientSession, *, n: int, rate: float | None, synchronous: str,
    concurrency: int, run: str,
) -> Figures:  # fmt: skip
    async with _bridge(receiver, synchronous, concurrency) as (store, channel, worker):
        results = _results(channel, n, run)
        await receiver.arrivals(http)  # forget anything earlier
        stop = asyncio.Event()
        loop = asyncio.create_task(worker.run(stop))
        try:
            cpu0, rx0 = time.process_time(), receiver.cpu()
            t0, sent_at = await _handover(results, rate, _committer(store, worker), lambda: None)
            t_end = await _until_done(worker, store, n, within_s=60 + n / 200)
            cpu, rx = time.process_time() - cpu0, receiver.cpu() - rx0
        finally:
            stop.set()
            await loop
        arrived = await receiver.arrivals(http)
    label = f"Wattbridge {synchronous}"
    load = "burst" if rate is None else f"paced {rate:g}/s"
    return _stats(label, load, n, t0, t_end, sent_at, arrived, cpu, rx)


# -- the bare ceiling ---------------------------------------------------------------------------------


async def run_ceiling(
    receiver: Receiver, http: aiohttp.ClientSession, *, n: int, concurrency: int
) -> Figures:
    """Bare aiohttp POSTs of same-size bodies at the same concurrency: no store, signing or logging."""
    body = b'{"type":"wallbox.charging_started","data":{' + b'"x":' + b"1" * 560 + b"}}"
    headers = {"content-type": "application/json", "User-Agent": f"Wattbridge/{__version__}"}
    keys = [f"bare-{i}" for i in range(n)]
    await receiver.arrivals(http)
    next_i = 0

    async with aiohttp.ClientSession() as session:

        async def loop() -> None:
            nonlocal next_i
            while next_i < n:
                key = keys[next_i]
                next_i += 1
                async with session.post(receiver.url, data=body, headers={**headers, "webhook-id": key}) as r:
                    await r.read()

        cpu0, rx0 = time.process_time(), receiver.cpu()
        t0 = time.monotonic_ns()
        await asyncio.gather(*(loop() for _ in range(concurrency)))
        t_end = time.monotonic_ns()
        cpu, rx = time.process_time() - cpu0, receiver.cpu() - rx0
    arrived = await receiver.arrivals(http)
    return _stats("bare aiohttp", "burst", n, t0, t_end, dict.fromkeys(keys, t0), arrived, cpu, rx)


# -- Alertmanager -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


@contextlib.asynccontextmanager
async def _alertmanager(receiver: Receiver, http: aiohttp.ClientSession) -> AsyncIterator[tuple[str, int]]:
    assert ALERTMANAGER is not None
    with tempfile.TemporaryDirectory(prefix="am-bench-") as tmp:
        config = Path(tmp) / "am.yml"
        config.write_text(
            "route:\n  receiver: hook\n  group_by: [alertname, id]\n  group_wait: 0s\n"
            "  group_interval: 1s\n  repeat_interval: 24h\n"
            f"receivers:\n- name: hook\n  webhook_configs:\n  - url: {receiver.url}\n"
            "    send_resolved: false\n"
        )
        port = _free_port()
        with (Path(tmp) / "am.log").open("wb") as am_log:
            proc = await asyncio.create_subprocess_exec(
                ALERTMANAGER, f"--config.file={config}", f"--storage.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=", "--log.level=warn",
                stdout=subprocess.DEVNULL, stderr=am_log,
            )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(200):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/-/ready") as resp:
                        if resp.status == 200:
                            break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"Alertmanager did not become ready: {(Path(tmp) / 'am.log').read_text()}")
            yield base, proc.pid
        finally:
            proc.terminate()
            await proc.wait()


async def run_alertmanager(
    receiver: Receiver, http: aiohttp.ClientSession, *, n: int, rate: float | None, run: str
) -> Figures:
    async with _alertmanager(receiver, http) as (base, pid):
        starts = datetime.now(UTC).isoformat()
        alerts = [
            {"labels": {"alertname": "WallboxChargingStarted", "id": f"{run}-{i}", "severity": "info"},
             "annotations": {"summary": f"wallbox {run}-wb-{i} started charging"}, "startsAt": starts}
            for i in range(n)
        ]  # fmt: skip
        await receiver.arrivals(http)

        async def post(chunk: Sequence[dict[str, Any]]) -> None:
            async with http.post(f"{base}/api/v2/alerts", data=orjson.dumps(chunk),
                                 headers={"content-type": "application/json"}) as resp:  # fmt: skip
                if resp.status != 200:
                    raise RuntimeError(f"Alertmanager refused alerts: {resp.status} {await resp.text()}")

        class Shim:  # _handover keys by delivery id; give each alert one
            def __init__(self, alert: dict[str, Any]) -> None:
                self.alert = alert
                self.deliveries = (type("D", (), {"id": alert["labels"]["id"]})(),)

        shims = [Shim(a) for a in alerts]
        cpu0, rx0 = _proc_cpu(pid), receiver.cpu()
        t0, sent_at = await _handover(shims, rate, lambda c: post([s.alert for s in c]), lambda: None)  # type: ignore[arg-type]
        deadline = time.monotonic() + 60 + n / 200
        while await receiver.count(http) < n and time.monotonic() < deadline:
            await asyncio.sleep(0.002)
        t_end = time.monotonic_ns()
        cpu, rx = _proc_cpu(pid) - cpu0, receiver.cpu() - rx0
        arrived = await receiver.arrivals(http)
    load = "burst" if rate is None else f"paced {rate:g}/s"
    return _stats("Alertmanager", load, n, t0, t_end, sent_at, arrived, cpu, rx)


# -- the driver ---------------------------------------------------------------------------------------


def _table(rows: Sequence[Figures]) -> str:
    head = f"{'who':<20} {'load':<13} {'n':>6} {'s':>7} {'per s':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'CPU µs/notif':>13} {'lost':>5} {'rx core':>7}"
    lines = [head]
    for f in rows:
        lines.append(
            f"{f.who:<20} {f.load:<13} {f.n:>6} {f.seconds:>7.3f} {f.rate:>8.0f} {f.p50_ms:>8.1f} "
            f"{f.p99_ms:>8.1f} {f.max_ms:>8.1f} {f.cpu_us:>13.0f} {f.lost:>5} {f.rx_core:>7.2f}"
        )
    return "\n".join(lines)


async def bench(args: argparse.Namespace) -> list[Figures]:
    receiver = Receiver()
    rows: list[Figures] = []
    try:
        async with aiohttp.ClientSession() as http:
            for rep in range(args.repeat):
                run = f"r{rep}-{time.time_ns()}"
                rows.append(await run_ceiling(receiver, http, n=args.n, concurrency=args.concurrency))
                for sync in args.synchronous:
                    rows.append(await run_wattbridge(
                        receiver, http, n=args.n, rate=None, synchronous=sync,
                        concurrency=args.concurrency, run=f"{run}-b{sync}",
                    ))  # fmt: skip
                    rows.append(await run_wattbridge(
                        receiver, http, n=args.paced_n, rate=args.rate, synchronous=sync,
                        concurrency=args.concurrency, run=f"{run}-p{sync}",
                    ))  # fmt: skip
                if args.alertmanager and ALERTMANAGER:
                    am = run_alertmanager
                    rows.append(await am(receiver, http, n=args.n, rate=None, run=f"{run}-amb"))
                    rows.append(await am(receiver, http, n=args.paced_n, rate=args.rate, run=f"{run}-amp"))
                print(f"-- repeat {rep + 1} of {args.repeat}", file=sys.stderr)
                print(_table(rows[-(len(rows) // (rep + 1)) :]), file=sys.stderr)
    finally:
        receiver.close()
    return rows


def _ratios(rows: Sequence[Figures]) -> str:
    """Per repeat: Wattbridge burst rate / ceiling, / Alertmanager; CPU ratios."""
    out = []
    ceiling = None
    am: dict[str, Figures] = {}
    wb: list[Figures] = []

    def flush() -> None:
        for f in wb:
            parts = [f"{f.who} {f.load}:"]
            if f.load == "burst" and ceiling is not None:
                parts.append(f"{f.rate / ceiling.rate:.2f}x ceiling")
            other = am.get(f.load)
            if other is not None:
                parts.append(f"{f.rate / other.rate:.2f}x AM rate" if f.load == "burst" else "")
                parts.append(f"p99 {f.p99_ms:.1f} vs AM {other.p99_ms:.1f} ms")
                parts.append(f"CPU {f.cpu_us / other.cpu_us:.2f}x AM's")
            out.append(" ".join(p for p in parts if p))

    for f in rows:
        if f.who == "bare aiohttp":
            flush()
            ceiling, am, wb = f, {}, []
        elif f.who == "Alertmanager":
            am[f.load] = f
        else:
            wb.append(f)
    flush()
    return "\n".join(out)


def on_uvloop(main: Any) -> Any:
    """Run `main` on uvloop (pip install uvloop): the same benchmark, another event loop."""
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: Sequence[str] | None = None) -> list[Figures]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000, help="notifications in the burst")
    p.add_argument("--paced-n", type=int, default=5000, help="notifications in the paced run")
    p.add_argument("--rate", type=float, default=1000.0, help="paced hand-over rate per second")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--concurrency",
        type=int,
        default=64,
        help="sends in flight ([server] delivery_concurrency's default)",
    )
    p.add_argument("--synchronous", nargs="+", default=["FULL", "NORMAL"], choices=["FULL", "NORMAL"])
    p.add_argument("--no-alertmanager", dest="alertmanager", action="store_false")
    p.add_argument("--json", type=Path, help="also write every figure here")
    p.add_argument("--no-logs", dest="logs", action="store_false", help="leave logging as it is")
    p.add_argument("--uvloop", action="store_true", help="run everything on uvloop (pip install uvloop)")
    p.add_argument(
        "--group-window-ms", type=float, help="the SQLite store's group-commit window (default: its own)"
    )
    args = p.parse_args(argv)
    global GROUP_WINDOW_S
    GROUP_WINDOW_S = None if args.group_window_ms is None else args.group_window_ms / 1000
    if args.logs:  # as `wattbridge run` logs (info, JSON), into /dev/null; tests keep their own logging
        logs.configure(level="info", fmt="json", stream=io.TextIOWrapper(open(os.devnull, "wb")))  # noqa: SIM115
    if args.alertmanager and ALERTMANAGER is None:
        print("Alertmanager skipped: apt-get install prometheus-alertmanager", file=sys.stderr)
    rows = asyncio.run(bench(args)) if not args.uvloop else on_uvloop(bench(args))
    print(_table(rows))
    print(_ratios(rows))
    load = os.getloadavg()
    print(f"CPU per notification = process CPU / notifications; {os.cpu_count()} cores; loadavg {load}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))
    return rows


if __name__ == "__main__":
    main()
