"""What a replica adopts from the `bridge.channel` states other replicas stored (SharedChannels), on
the contract suite's stores: a pause, a 410's disable, a re-enable, a closed circuit; never a
state older than this replica's own last change of the channel."""

from __future__ import annotations

from datetime import timedelta

import aiohttp

from bridge.clock import ManualClock
from bridge.deliver.breaker import Breakers
from bridge.deliver.shared_channels import SharedChannels
from bridge.model import CHANNEL_PROVIDER, CHANNEL_SOURCE, PollResult, ResourceKey, Snapshot
from tests.deliver.test_worker import T0, webhook

KEY = ResourceKey(source=CHANNEL_SOURCE, provider=CHANNEL_PROVIDER, resource_id="partner")


async def store_state(store, status: str, *, at_s: int, **extra: object) -> None:
    """Another replica's `bridge.channel` write (the next version of the row)."""
    old = await store.get_snapshot(KEY)
    state = {"channel": "partner", "status": status, "consecutive_failures": 0, "last_error": None}
    state.update(extra)
    snap = Snapshot(
        key=KEY,
        state=state,
        digest=f"{status}-{at_s}",
        sequence=0,
        updated_at=T0 + timedelta(seconds=at_s),
        version=1 if old is None else old.version + 1,
    )
    await store.commit([PollResult(snapshot=snap)])


async def test_pause_disable_enable_and_close_are_adopted_but_never_an_older_state(store):
    clock = ManualClock(T0)
    async with aiohttp.ClientSession() as session:
        channel = webhook("http://127.0.0.1:9/hook", session, clock)
        channels = {"partner": channel}
        breakers, told = Breakers(), set[str]()
        shared = SharedChannels(store, clock)

        until = T0 + timedelta(seconds=40)
        await store_state(store, "paused", at_s=1, consecutive_failures=5, paused_until=until.isoformat())
        clock.advance(timedelta(seconds=2))
        await shared.refresh(channels, breakers, told)
        circuit = breakers.get("partner")
        assert (circuit.state, circuit.open_until, circuit.consecutive_failures) == ("open", until, 5)
        assert not breakers.allow("partner", clock.now())  # paused here too

        await store_state(store, "ok", at_s=3)
        clock.advance(timedelta(seconds=2))
        await shared.refresh(channels, breakers, told)
        assert breakers.get("partner").state == "closed"  # another replica's probe succeeded

        await store_state(store, "disabled", at_s=5, last_error="HTTP 410 Gone: channel disabled")
        clock.advance(timedelta(seconds=2))
        await shared.refresh(channels, breakers, told)
        assert channel.disabled is True
        assert "partner" in told  # the other replica told ops already

        # This replica changes the channel itself at 8 s; a state stored at 7 s is older: kept out.
        await store_state(store, "ok", at_s=7)
        shared.changed_here("partner", T0 + timedelta(seconds=8))
        clock.advance(timedelta(seconds=2))
        await shared.refresh(channels, breakers, told)
        assert channel.disabled is True

        await store_state(store, "ok", at_s=9)  # the operator re-enabled it on another replica
        clock.advance(timedelta(seconds=2))
        await shared.refresh(channels, breakers, told)
        assert channel.disabled is False
        assert "partner" not in told
        assert shared.adopted == 4
