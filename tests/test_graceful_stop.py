"""SIGTERM while a poll waits on a slow provider (issue 11): the process stops at once with one clean
`bridge.stopped` (the poll is cancelled quietly: no CancelledError traceback), and a `for` hold that
was running keeps its original start across the restart, firing when it ends. A real `python -m
bridge run` child against the Podero simulator and a webhook sink (the harness of bench/crash.py)."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
import time
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import orjson

from bench.crash import ORG, SECRET, BridgeProcess, _free_port, served, write_config
from bridge.clock import SystemClock
from bridge.simulator import FaultPlan
from bridge.simulator.podero import ROUTES, PoderoSimulator
from bridge.simulator.sinks import WebhookSink

HOLD = timedelta(seconds=4)
SLOW = 60.0  # the stuck provider answers after this long: far beyond any wait below


def query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
        return list(conn.execute(sql))


async def until(what: str, check, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def polls_done(log: Path) -> int:
    """Wallbox polls the bridge finished, from its JSON log (the first one is the baseline)."""
    lines = log.read_bytes().splitlines() if log.exists() else []
    return sum(b'"poll.completed"' in line and b'"group":"wallboxes"' in line for line in lines)


def pending_hold(db: Path) -> list[tuple[object, ...]]:
    if not db.exists():
        return []
    return query(db, "SELECT since, phase FROM rule_states WHERE rule_id = 'charging' AND phase = 'pending'")


async def test_sigterm_during_a_stuck_poll_stops_cleanly_and_the_hold_keeps_its_start(tmp_path):
    sim = PoderoSimulator(clock=SystemClock(), org_id=ORG)
    user = sim.add_user(email="ada@example.com")
    box = sim.add_wallbox(user, charge_rate_w=0.0)
    sink = WebhookSink(SECRET)
    db = tmp_path / "bridge.db"
    log_path = tmp_path / "bridge.log"
    async with served(sim.app()) as podero_url, served(sink.app()) as sink_url:
        port = _free_port()
        config = write_config(
            tmp_path,
            podero_url,
            f"{sink_url}/hooks/partner",
            # A drain and a provider timeout longer than the whole test: only a prompt cancel ends it.
            server=f'listen = "127.0.0.1:{port}"\ndrain_timeout = "45s"',
            podero='poll_interval = "300ms"\ntimeout = "45s"',
        )
        (tmp_path / "rules.toml").write_text(
            textwrap.dedent(f"""
            [[rule]]
            id = "charging"
            source = "podero.wallbox"
            field = "is_charging"
            to = true
            for = "{int(HOLD.total_seconds())}s"
            channels = ["partner"]
            """)
        )
        with log_path.open("ab") as log:
            bridge = BridgeProcess(config, log, log_level="info")
            await bridge.start()
            try:
                await until("the baseline and one more poll", lambda: polls_done(log_path) >= 2)
                sim.update_wallbox(box, is_charging=True)
                await until("the hold to start", lambda: bool(pending_hold(db)))
                [(since, _)] = pending_hold(db)

                sim.fail("users", kind="slow", delay=SLOW, times=1000)
                await until("a poll stuck on the slow provider", lambda: sim.faults.pending("users") < 1000)
                assert bridge.proc is not None
                stopped_at = time.monotonic()
                code = await bridge.stop(timeout=15.0)  # SIGTERM; SIGKILL if not gone by then
                assert code == 0, "SIGTERM did not end the process: it was killed"
                assert time.monotonic() - stopped_at < SLOW  # it did not wait for the provider

                assert pending_hold(db) == [(since, "pending")]  # the hold survived the stop
                sim.faults = FaultPlan(ROUTES)  # the provider recovers
                await bridge.start()
                [hook] = await sink.wait_for(1, timeout=20)
            finally:
                await bridge.stop(timeout=15.0)

    event = hook.json
    assert event["data"]["resource_id"] == box
    start = datetime.fromisoformat(str(since))
    fired = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert fired >= start + HOLD  # the hold ran from its original start, not from the restart

    records = [orjson.loads(line) for line in log_path.read_bytes().splitlines() if line.startswith(b"{")]
    text = log_path.read_text()
    assert "Traceback" not in text
    assert "CancelledError" not in text
    assert "raised an exception" not in text
    assert [r["event"] for r in records].count("bridge.stopped") == 2  # one per graceful stop
    assert any(r["event"] == "poll.cancelled" for r in records)
