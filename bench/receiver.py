"""A fast webhook receiver for the delivery benchmarks, run as its own process (its own GIL and core).

It answers every POST with 204 and remembers (arrival time, key): the key is the `webhook-id` header
(Wattbridge) or the `id` group label of an Alertmanager notification. Arrival times are
`time.monotonic_ns()`, the same CLOCK_MONOTONIC the benchmark process reads, so latencies can be
computed across the two processes.

    python bench/receiver.py [--key body]   # prints its port on the first line of stdout, then serves

`--key body` keys a Wattbridge webhook by what it notifies instead (`resource_id:new value` of its
one change), for the latency benchmark, which knows which poll read that value.

GET /arrivals returns the arrivals as JSON and forgets them; GET /count says how many are waiting.
"""

from __future__ import annotations

import asyncio
import sys
import time

import orjson
from aiohttp import web

arrivals: list[tuple[int, str]] = []
BY_BODY = "--key" in sys.argv and sys.argv[sys.argv.index("--key") + 1] == "body"


async def hook(request: web.Request) -> web.Response:
    at = time.monotonic_ns()
    body = await request.read()
    key = request.headers.get("webhook-id")
    if BY_BODY:
        data = orjson.loads(body)["data"]
        key = f"{data['resource_id']}:{data['changes'][0]['new']}"
    elif key is None:  # an Alertmanager notification: one alert per group, the id is a group label
        key = str(orjson.loads(body)["groupLabels"].get("id", ""))
    arrivals.append((at, key))
    return web.Response(status=204)


async def count(request: web.Request) -> web.Response:
    return web.Response(text=str(len(arrivals)))


async def take(request: web.Request) -> web.Response:
    taken = arrivals[:]
    del arrivals[: len(taken)]
    return web.Response(body=orjson.dumps(taken), content_type="application/json")


async def main() -> None:
    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    app.router.add_get("/arrivals", take)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    server = site._server
    assert server is not None
    assert server.sockets
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until the benchmark closes our stdin (so an orphan never outlives it).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
