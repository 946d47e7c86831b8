"""Send throughput of the mqtt and apprise channels, each beside a bare client doing the same sends.

- **mqtt**: `MqttChannel.send` of N stored notifications (QoS 1, so each waits for its PUBACK) to
  the broker at WATTBRIDGE_TEST_MQTT (default 127.0.0.1:1883), `--concurrency` at once as the
  outbox worker would; beside it a bare aiomqtt client publishing the same payloads.
- **apprise**: `AppriseChannel.send` of N notifications to a loopback aiohttp receiver through
  Apprise's json:// (the channel runs Apprise on its own 4 threads); beside it a bare aiohttp POST
  loop of the same JSON at the same concurrency.

Rates are sends/s (wall clock), CPU is this process's CPU time per send (all threads). The shared
machine moves absolute numbers: compare each channel with its bare client in the same run.

    .venv/bin/python bench/channels.py [--n 2000] [--concurrency 64] [--repeat 3] [--kind mqtt apprise]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiohttp
import aiomqtt
import orjson
from aiohttp import web

from bridge.channels.apprise import AppriseChannel
from bridge.channels.base import RenderContext
from bridge.channels.mqtt import MqttChannel
from bridge.clock import SystemClock
from bridge.config.models import AppriseChannelConfig, MqttChannelConfig
from bridge.model import Delivery, Event, ResourceKey

NOW = datetime.now(UTC)


def event(i: int) -> Event:
    return Event(
        id=f"evt_{i}",
        rule_id="charging-started",
        type="wallbox.charging_started",
        status="firing",
        severity="info",
        key=ResourceKey(source="podero.wallbox", provider="podero", resource_id=f"wb-{i}"),
        sequence=1,
        changes=(),
        state={"is_charging": True, "charge_rate_w": 7200.0},
        occurred_at=NOW,
    )


def deliveries(render: Callable[[Event], bytes], n: int) -> list[Delivery]:
    return [
        Delivery(
            id=f"d{i}",
            event_id=f"evt_{i}",
            channel="c",
            body=render(event(i)),
            next_attempt_at=NOW,
            created_at=NOW,
        )
        for i in range(n)
    ]


async def timed(sends: list[Callable[[], Awaitable[object]]], concurrency: int) -> tuple[float, float]:
    """(sends/s, CPU ms per send) for running `sends` with at most `concurrency` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(send: Callable[[], Awaitable[object]]) -> None:
        async with gate:
            await send()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(s) for s in sends))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return len(sends) / wall, cpu * 1000 / len(sends)


async def bench_mqtt(n: int, concurrency: int) -> dict[str, tuple[float, float]]:
    host, _, port = os.environ.get("WATTBRIDGE_TEST_MQTT", "127.0.0.1:1883").rpartition(":")
    cfg = MqttChannelConfig.model_validate(
        {"kind": "mqtt", "host": host, "port": int(port), "topic": "wattbridge-bench/{{ event.resource_id }}"}
    )
    channel = MqttChannel("c", cfg, clock=SystemClock())
    items = deliveries(lambda e: channel.render(e, RenderContext(old=None)), n)
    await channel.send(items[0])  # connect outside the clock
    failed = 0

    async def send(d: Delivery) -> None:
        nonlocal failed
        failed += not (await channel.send(d)).ok

    ours = await timed([lambda d=d: send(d) for d in items], concurrency)
    await channel.close()
    assert failed == 0, f"{failed} mqtt sends failed"
    stored = [orjson.loads(d.body) for d in items]
    bare = aiomqtt.Client(host, int(port))
    bare.pending_calls_threshold = 1024  # as the channel does: 64 in flight is the point here
    async with bare:
        raw = await timed(
            [lambda s=s: bare.publish(s["topic"], s["payload"].encode(), qos=1) for s in stored], concurrency
        )
    return {"mqtt channel": ours, "bare aiomqtt": raw}


async def bench_apprise(n: int, concurrency: int) -> dict[str, tuple[float, float]]:
    received = 0

    async def notify(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/notify", notify)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        cfg = AppriseChannelConfig.model_validate(
            {"kind": "apprise", "url": f"json://127.0.0.1:{port}/notify"}
        )
        channel = AppriseChannel("c", cfg, clock=SystemClock())
        items = deliveries(lambda e: channel.render(e, RenderContext(old=None)), n)
        await channel.send(items[0])  # threads and imports outside the clock
        failed = 0

        async def send(d: Delivery) -> None:
            nonlocal failed
            failed += not (await channel.send(d)).ok

        ours = await timed([lambda d=d: send(d) for d in items], concurrency)
        await channel.close()
        assert failed == 0, f"{failed} apprise sends failed"
        async with aiohttp.ClientSession() as session:

            async def post(body: bytes) -> None:
                async with session.post(f"http://127.0.0.1:{port}/notify", data=body) as resp:
                    await resp.read()

            raw = await timed([lambda d=d: post(d.body) for d in items], concurrency)
    finally:
        await runner.cleanup()
    return {"apprise channel": ours, "bare aiohttp POST": raw}


async def run(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kind", nargs="+", default=["mqtt", "apprise"], choices=["mqtt", "apprise"])
    args = parser.parse_args(argv)
    runs: dict[str, list[tuple[float, float]]] = {}
    for _ in range(args.repeat):
        for kind in args.kind:
            bench = bench_mqtt if kind == "mqtt" else bench_apprise
            for name, figure in (await bench(args.n, args.concurrency)).items():
                runs.setdefault(name, []).append(figure)
    print(f"n={args.n} concurrency={args.concurrency} repeat={args.repeat} (median of runs)")
    figures = {}
    for name, measured in runs.items():
        rate = statistics.median(f[0] for f in measured)
        cpu = statistics.median(f[1] for f in measured)
        figures[name] = {"sends_per_s": rate, "cpu_ms": cpu}
        print(f"  {name:20s} {rate:9.0f} sends/s   {cpu:6.3f} ms CPU/send")
    return figures


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    return asyncio.run(run(argv))


if __name__ == "__main__":
    main()
