"""Service: a background loop owned by a block, drained on exit, and a crash reported, not swallowed."""

from __future__ import annotations

import asyncio

import pytest

from bridge.app_keys import DELIVERY
from bridge.lifecycle import Service


async def test_a_service_stops_when_its_block_ends():
    seen: list[str] = []

    async def loop(stop: asyncio.Event) -> None:
        seen.append("started")
        await stop.wait()
        seen.append("drained")

    async with Service(loop, name="t") as svc:
        await asyncio.sleep(0)
        assert svc.running
    assert seen == ["started", "drained"]
    assert not svc.running


async def test_a_loop_that_ignores_stop_is_cancelled_after_the_drain_bound():
    cancelled = asyncio.Event()

    async def stubborn(stop: asyncio.Event) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with Service(stubborn, name="stubborn", drain=0.01):
        await asyncio.sleep(0)
    assert cancelled.is_set()


async def test_a_crashed_loop_calls_on_crash_and_reraises_on_exit():
    crashes: list[tuple[str, str]] = []
    crashed = asyncio.Event()

    async def broken(stop: asyncio.Event) -> None:
        raise RuntimeError("boom")

    def on_crash(name: str, exc: BaseException) -> None:
        crashes.append((name, str(exc)))
        crashed.set()

    with pytest.raises(RuntimeError, match="boom"):
        async with Service(broken, name="delivery", on_crash=on_crash):
            await crashed.wait()
    assert crashes == [("delivery", "boom")]


async def test_the_delivery_worker_sends_as_many_at_once_as_the_config_says(make_config, make_bridge):
    default = await make_bridge(make_config())
    configured = await make_bridge(make_config(server={"listen": "127.0.0.1:0", "delivery_concurrency": 7}))

    assert default.app[DELIVERY].concurrency == 64
    assert configured.app[DELIVERY].concurrency == 7
