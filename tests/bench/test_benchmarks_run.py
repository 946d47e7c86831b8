"""The delivery and latency benchmarks still run end to end (tiny sizes; their figures live in bench/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # latency.py imports the receiver helper from delivery.py
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_delivery_benchmark_delivers_every_notification_and_measures_the_ceiling():
    rows = bench_module("delivery").main(
        ["--n", "20", "--paced-n", "10", "--rate", "500", "--repeat", "1", "--synchronous", "NORMAL",
         "--no-alertmanager", "--no-logs"]
    )  # fmt: skip

    assert [(r.who, r.load, r.n, r.lost) for r in rows] == [
        ("bare aiohttp", "burst", 20, 0),
        ("Wattbridge NORMAL", "burst", 20, 0),
        ("Wattbridge NORMAL", "paced 500/s", 10, 0),
    ]
    assert all(r.rate > 0 and r.cpu_us > 0 for r in rows)


@pytest.mark.parametrize("watch", ["by-id", "discover"])
def test_the_latency_benchmark_sees_every_change_notified_once_per_poll_read(watch):
    [row] = bench_module("latency").main(
        ["--rate", "100", "--per-poll", "2", "--wallboxes", "4", "--seconds", "0.1", "--repeat", "1",
         "--synchronous", "NORMAL", "--watch", watch, "--no-logs"]
    )  # fmt: skip

    # The simulator changes wallboxes on its own timer (5 ticks of 2), so a late poll may miss a
    # value it replaced; every value a poll did read is notified.
    assert row.made == 10
    assert 0 < row.events <= row.made
    assert row.lost == 0
    assert 0 < row.p50_ms <= row.p99_ms <= row.max_ms
    assert row.sim_core >= 0


def test_the_latency_split_accounts_for_every_webhook_in_each_part():
    parts = bench_module("latency_split").main(
        ["--rate", "100", "--per-poll", "2", "--wallboxes", "4", "--seconds", "0.1", "--repeat", "1",
         "--synchronous", "NORMAL", "--no-logs"]
    )  # fmt: skip

    [n] = {len(values) for values in parts.values()}  # every part of every webhook
    assert 0 < n <= 10  # the values a poll read, of the simulator's 10
    assert all(v >= 0 for values in parts.values() for v in values)


def test_the_outbox_wake_benchmark_delivers_in_both_modes():
    import os

    if not os.environ.get("WATTBRIDGE_TEST_PG"):
        pytest.skip("WATTBRIDGE_TEST_PG is unset: the outbox wake-up benchmark needs PostgreSQL")
    rows = bench_module("outbox_wake").main(["--n", "2", "--repeat", "1"])

    assert [mode for mode, *_ in rows] == ["notify", "poll only"]
    assert all(p50 > 0 for _, _, p50, _ in rows)


@pytest.mark.parametrize("field", [True, False])
def test_the_stale_timer_benchmark_arms_rearms_and_counts_the_rows(field):
    argv = ["--resources", "1200", "--repeat", "1", "--store", "sqlite"] + ([] if field else ["--no-field"])
    [row] = bench_module("stale").main(argv)

    assert (row["arm_rows"], row["poll_rows"]) == (1200, 0)  # one timer each, then none per poll
    assert (row["rearm_due"], row["rearm_rows"], row["rearm_events"], row["still_due"]) == (1200, 2400, 0, 0)
    assert row["rearm_ticks"] == 1


def test_the_split_send_experiment_delivers_every_notification_in_both_forms():
    rows = bench_module("split_send").main(
        ["--n", "20", "--paced-n", "10", "--rate", "500", "--repeat", "1", "--no-logs"]
    )

    assert [(r.who, r.load, r.n, r.lost) for r in rows] == [
        ("one process", "burst", 20, 0),
        ("one process", "paced 500/s", 10, 0),
        ("split: sends in a child", "burst", 20, 0),
        ("split: sends in a child", "paced 500/s", 10, 0),
    ]
    assert all(r.rate > 0 and r.cpu_us > 0 for r in rows)
