"""Nothing lost under kill -9 (issue 5, SPEC §8): a real `python -m bridge run` child is SIGKILLed at
random instants while wallboxes change step by step, restarted on the same SQLite file, then drained
and stopped with SIGTERM. The harness is `bench/crash.py` (its long version prints figures).
"""

from __future__ import annotations

from bench.crash import CrashRun, crash_run


async def test_sigkill_at_random_instants_loses_no_notification_and_resends_identically(tmp_path):
    run = await crash_run(tmp_path, wallboxes=100, steps=10, kills=10, seed=5, budget=45.0)

    assert run.kills >= 10
    assert run.changes >= 1000
    assert_nothing_lost(run)


async def test_with_fetch_workers_nothing_is_lost_and_no_worker_outlives_its_bridge(tmp_path):
    run = await crash_run(tmp_path, wallboxes=40, steps=6, kills=6, seed=7, budget=60.0, fetch_workers=2)

    assert run.kills >= 6
    assert run.changes >= 240
    assert run.workers_seen  # the kills hit bridges that had worker processes running
    assert run.orphans == set()  # each left with its killed bridge (kill -9 runs no cleanup)
    assert_nothing_lost(run)


def assert_nothing_lost(run: CrashRun) -> None:
    assert run.changes_before_last_kill > 0  # the kills interrupted real work, not an idle bridge
    # Every change the driver made was notified at least once, and nothing else was.
    assert run.lost == set()
    assert run.unexpected == []
    # A duplicate is a resend of the same notification: one webhook-id per change, the same bytes.
    assert {k: ids for k, ids in run.ids_per_step().items() if len(ids) != 1} == {}
    assert {i: len(b) for i, b in run.bodies_per_id().items() if len(b) != 1} == {}
    # Receivers can order a resource's events by `sequence`: it grows with each step.
    for rid, seqs in run.sequences_in_step_order().items():
        assert seqs == sorted(set(seqs)), rid
    # The file survived every kill; the outbox drained; the last stop was graceful.
    assert run.integrity == "ok"
    assert run.outbox == {"delivered": run.changes}
    assert run.exit_code == 0
