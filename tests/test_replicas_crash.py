"""Three `wattbridge run` replicas (real child processes) on one PostgreSQL database, one of them
SIGKILLed and restarted at random instants while wallboxes change step by step: nothing lost, and a
duplicate is only a re-send (same webhook-id, same body), never a second event for one step. The
wallboxes are watched by id, so their group is polled in shards that move between the replicas.
The harness is `bench/replicas.py` (its long version prints figures, takeover times among them)."""

from __future__ import annotations

import os

import pytest

from bench.replicas import replica_run
from tests.store.conftest import NO_PG

PG_URL = os.environ.get("WATTBRIDGE_TEST_PG")


@pytest.mark.skipif(not PG_URL, reason=NO_PG)
@pytest.mark.timeout(240)  # three `wattbridge run` processes: ~45 s alone, more on a loaded 2-core CI machine
async def test_three_replicas_with_sigkills_lose_nothing_and_never_notify_one_step_twice():
    assert PG_URL is not None
    run = await replica_run(PG_URL, replicas=3, wallboxes=30, steps=3, kills=2, seed=3, budget=90.0)

    assert run.kills == 2
    assert run.changes == 90
    assert run.lost == 0
    assert run.two_ids_one_step == 0  # one transition, one event, one webhook-id
    assert run.mismatched == 0  # a re-send carries the very bytes of the first send
    assert run.received == run.changes + run.duplicates
    # Each kill's poll leases (sharded wallbox groups) were read before it and watched after it
    # (the figures are the bench's; here only that every kill was followed).
    assert len(run.takeovers) + run.not_taken == run.kills
