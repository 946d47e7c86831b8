"""Two replicas on one PostgreSQL database share one provider credential: each runs with half of
its `max_requests_per_second` and `max_concurrency` while both are members, the survivor takes the
whole limits back once a dead replica's membership expires (or at once after a clean stop). On
SQLite (one process) the provider runs with its whole limits, as before."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest

from bridge.app import _ownership, _providers, _store, create_app
from bridge.app_keys import FETCH_POOLS, OWNERSHIP, PROVIDERS, STORE
from bridge.poll.membership import Membership
from bridge.poll.ownership import PollOwnership
from tests.store.conftest import pg_schema

PERIOD = timedelta(seconds=30)


def limits(bridge) -> tuple[float, int]:
    return bridge.app[PROVIDERS]["podero"].http.limits


def replica(bridge, clock, name: str) -> PollOwnership:
    membership = Membership(
        bridge.store,
        clock,
        replica_id=name,
        period=PERIOD,
        providers=bridge.app[PROVIDERS],
        pools=bridge.app[FETCH_POOLS],
    )
    return PollOwnership(bridge.store, clock, replica_id=name, period=PERIOD, membership=membership)


async def test_two_replicas_split_the_provider_limits_and_a_survivor_takes_them_back(
    make_config, make_bridge, clock
):
    async with pg_schema() as (url, schema):
        config = make_config(store={"url": f"{url}?search_path={schema}"})
        cfg = config.providers["podero"]
        whole = (cfg.max_requests_per_second, cfg.max_concurrency)
        half = (cfg.max_requests_per_second / 2, cfg.max_concurrency // 2)
        a, b = [await make_bridge(config) for _ in range(2)]
        ra, rb = replica(a, clock, "replica-a"), replica(b, clock, "replica-b")
        assert ra.membership is not None
        assert rb.membership is not None

        await ra.membership.heartbeat()  # a alone: the whole credential
        assert limits(a) == whole
        await rb.membership.heartbeat()  # b joins and sees a: half at once
        assert limits(b) == half
        # a lowers its share at its next heartbeat (at most a third of a lease period later): the
        # one window in which the two together may exceed the limit (README "Running several replicas").
        assert limits(a) == whole
        clock.advance(PERIOD / 3)
        await ra.heartbeat()
        await rb.heartbeat()  # b's last heartbeat
        assert limits(a) == limits(b) == half
        assert limits(a)[0] + limits(b)[0] == cfg.max_requests_per_second
        assert limits(a)[1] + limits(b)[1] == cfg.max_concurrency

        # b is SIGKILLed: its heartbeats stop. a keeps half until b's membership expires one lease
        # period after that last heartbeat (under the limit meanwhile, never over), then runs with
        # the whole limits again.
        for _ in range(2):
            clock.advance(PERIOD / 3)
            await ra.heartbeat()
            assert limits(a) == half
        clock.advance(PERIOD / 3)
        await ra.heartbeat()
        assert ra.membership.members["podero"] == ["replica-a"]
        assert limits(a) == whole

        # b restarts, then stops cleanly: its release ends its membership at once.
        await rb.heartbeat()
        await ra.heartbeat()
        assert limits(a) == limits(b) == half
        await rb.release()
        await ra.heartbeat()
        assert limits(a) == whole


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_run_joins_a_shared_store_as_a_member_and_leaves_one_process_its_whole_limits(
    backend, make_config, clock
):
    """What `wattbridge run` starts (the app's store, providers and leases, in order): on SQLite no
    membership at all, on PostgreSQL a member that joined before its first poll."""
    async with contextlib.AsyncExitStack() as stack:
        extra = {}
        if backend == "postgres":
            url, schema = await stack.enter_async_context(pg_schema())
            extra = {"store": {"url": f"{url}?search_path={schema}"}}
        config = make_config(cluster={"replica_id": "replica-a"}, **extra)
        cfg = config.providers["podero"]
        app = create_app(config, clock=clock, start_scheduler=False)
        for ctx in (_store, _providers, _ownership):
            steps = ctx(app)
            await anext(steps)
            stack.push_async_callback(anext, steps, None)  # resumed: each runs its own cleanup
        membership = app[OWNERSHIP].membership
        assert (membership is None) == (backend == "sqlite")
        if membership is not None:
            assert membership.members == {"podero": ["replica-a"]}
            assert [r[:2] for r in await app[STORE].lease_holders("member:", clock.now())] == [
                ("member:podero:replica-a", "replica-a")
            ]
        assert app[PROVIDERS]["podero"].http.limits == (cfg.max_requests_per_second, cfg.max_concurrency)
