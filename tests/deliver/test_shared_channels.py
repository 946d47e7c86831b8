"""Channel state on replicas: two bridges on one PostgreSQL database share one partner channel. A
410 Gone seen by either disables the channel on both (no replica hammers a receiver that said
"gone"), `POST /api/channels/partner/enable` on either re-enables it on both, and a circuit that
one replica opened pauses the channel on the other too.

Each replica's delivery worker also runs in the background (woken by the other's NOTIFY), so which
replica sends is not fixed: every assertion holds whichever it is, and `eventually` gives both
workers passes until the expected state is reached (or fails after its deadline)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from bridge.app_keys import DELIVERY
from tests.store.conftest import pg_schema
from tests.web.conftest import ADMIN_TOKEN

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
WALLBOXES = [f"00000000-0000-4000-8000-0000000000{i:02d}" for i in range(10, 20)]


async def replicas(make_config, make_bridge, podero, url: str, n_wallboxes: int):
    user = podero.add_user(email="ada@example.com")
    boxes = WALLBOXES[:n_wallboxes]
    for wb in boxes:
        podero.add_wallbox(user, wallbox_id=wb, is_plugged_in=True, is_charging=False)
    config = make_config(
        wallboxes=[{"user_id": user, "wallbox_id": wb} for wb in boxes],
        store={"url": url},
        server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN},
    )
    a, b = await make_bridge(config), await make_bridge(config)
    await a.poll()  # baseline
    return a, b, boxes


async def passes(*bridges) -> None:
    """One worker pass on each replica: channel states read again, everything due sent."""
    for bridge in bridges:
        await bridge.app[DELIVERY].refresh_channels()
        await bridge.deliver()


async def eventually(check: Callable[[], Awaitable[bool]], *bridges, tries: int = 500) -> None:
    for _ in range(tries):
        await passes(*bridges)
        if await check():
            return
        await asyncio.sleep(0.01)
    assert await check()


def status(bridge) -> str:
    return str(bridge.app[DELIVERY].channel_state("partner")["status"])


def both(a, b, want: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return status(a) == status(b) == want

    return check


async def test_a_410_on_one_replica_disables_the_channel_on_both_and_enable_on_either_enables_both(
    make_config, make_bridge, podero, sink, clock
):
    async with pg_schema() as (url, schema):
        a, b, (first, second) = await replicas(
            make_config, make_bridge, podero, f"{url}?search_path={schema}", 2
        )
        sink.respond_with(410)
        podero.update_wallbox(first, is_charging=True)
        clock.advance(timedelta(seconds=60))
        assert (await a.poll()).events == 1
        await sink.wait_for(1)
        await eventually(both(a, b, "disabled"), a, b)  # one saw the 410, the other adopted it

        # A change while disabled: whichever replica takes it, the receiver is not called again.
        sink.clear_script()
        podero.update_wallbox(second, is_charging=True)
        clock.advance(timedelta(seconds=60))
        assert (await b.poll()).events == 1

        async def both_dead() -> bool:
            return len(await a.store.list_deliveries(status="dead")) == 2

        await eventually(both_dead, a, b)
        assert len(sink.received) == 1
        dead = await a.store.list_deliveries(status="dead")

        clock.advance(timedelta(seconds=1))
        resp = await b.client.post("/api/channels/partner/enable", headers=AUTH)
        assert resp.status == 200
        assert (await resp.json())["was_disabled"] is True
        await eventually(both(a, b, "ok"), a, b)
        for d in dead:  # replayed on A, which the enable did not reach directly
            resp = await a.client.post(f"/api/deliveries/{d.id}/replay", headers=AUTH)
            assert resp.status == 202
        await sink.wait_for(3)
        await passes(a, b)

    assert [r.status for r in sink.received] == [410, 204, 204]
    assert {r.webhook_id for r in sink.received[1:]} == {d.id for d in dead}


async def test_a_circuit_opened_on_one_replica_pauses_the_channel_on_both(
    make_config, make_bridge, podero, sink, clock
):
    async with pg_schema() as (url, schema):
        a, b, boxes = await replicas(make_config, make_bridge, podero, f"{url}?search_path={schema}", 10)
        # Ten failures in a row between the two replicas: at least one of them sees five (its
        # circuit's threshold) and opens its circuit; the other adopts the pause (or opens too).
        sink.respond_with(*([503] * len(boxes)))
        for wb in boxes:
            podero.update_wallbox(wb, is_charging=True)
        clock.advance(timedelta(seconds=2))
        assert (await a.poll()).events == len(boxes)
        await eventually(both(a, b, "paused"), a, b)
        failed = len(sink.received)
        assert 5 <= failed <= len(boxes)

        # The retries fall due (5 s) while the pause (30 s) lasts: neither replica sends.
        clock.advance(timedelta(seconds=10))
        await passes(a, b)
        await passes(a, b)
        assert len(sink.received) == failed
        assert (status(a), status(b)) == ("paused", "paused")

        # The pauses end (a replica whose sends in flight kept failing paused longer: up to the
        # 10 min cap): a probe succeeds (the receiver answers 204 again) and the channel is ok on
        # both replicas; what the pause kept leased goes out when those leases run out.
        clock.advance(timedelta(minutes=11))
        await eventually(both(a, b, "ok"), a, b)
        clock.advance(timedelta(minutes=2))

        async def all_delivered() -> bool:
            return len(await a.store.list_deliveries(status="delivered")) == len(boxes)

        await eventually(all_delivered, a, b)
    assert all(r.status == 204 for r in sink.received[failed:])
