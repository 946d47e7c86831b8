"""The concurrency gate of a provider client (bridge/providers/pacing.py Gate) and its shares: a
replica's part of `max_concurrency` changes with the number of replicas while requests are in
flight, and never lets more in than its new size once those have left."""

from __future__ import annotations

import asyncio

import aiohttp

from bridge.providers.http import ProviderHttp
from bridge.providers.pacing import Gate


async def settle() -> None:
    for _ in range(10):  # let every ready task run up to its next wait (no time passes)
        await asyncio.sleep(0)


class Requests:
    """Requests through a gate, each held inside until the test lets it go."""

    def __init__(self, gate: Gate) -> None:
        self.gate, self.inside, self.most = gate, 0, 0
        self.go: list[asyncio.Event] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(self, n: int) -> None:
        for _ in range(n):
            go = asyncio.Event()
            self.go.append(go)
            self.tasks.append(asyncio.create_task(self._one(go)))

    async def _one(self, go: asyncio.Event) -> None:
        async with self.gate:
            self.inside += 1
            self.most = max(self.most, self.inside)
            await go.wait()
            self.inside -= 1

    async def finish(self, first: int, count: int) -> None:
        for go in self.go[first : first + count]:
            go.set()
        await settle()


async def test_a_gate_shrunk_while_full_lets_in_no_more_than_its_new_size_after_the_others_left():
    gate = Gate(4)
    reqs = Requests(gate)
    reqs.start(4)
    await settle()
    assert reqs.inside == 4

    gate.resize(1)  # a second and third replica joined... its share is now 1
    reqs.start(4)
    await settle()
    assert reqs.inside == 4  # nobody new enters while the old ones are still inside
    await reqs.finish(0, 3)
    assert reqs.inside == 1  # three of four left: the debt of three is paid, none of the new in
    await reqs.finish(3, 1)
    assert reqs.inside == 1  # the last old one left: one new one in, no more
    reqs.most = 0
    for i in range(4, 8):
        await reqs.finish(i, 1)
        assert reqs.inside <= 1
    await asyncio.gather(*reqs.tasks)


async def test_a_gate_grown_lets_waiting_requests_in_at_once():
    gate = Gate(1)
    reqs = Requests(gate)
    reqs.start(5)
    await settle()
    assert reqs.inside == 1
    gate.resize(3)  # a replica left: the share grows
    await settle()
    assert reqs.inside == 3
    gate.resize(2)
    gate.resize(4)  # a debt is forgiven before any place is added
    await settle()
    assert reqs.inside == 4
    await reqs.finish(0, 5)
    await asyncio.gather(*reqs.tasks)
    assert reqs.most == 4


async def test_a_provider_client_divided_between_replicas_runs_with_its_share_of_the_limits():
    async with aiohttp.ClientSession() as session:
        http = ProviderHttp(
            "podero",
            session,
            timeout=1.0,
            max_body_bytes=1024,
            max_requests_per_second=90.0,
            max_concurrency=8,
        )
        assert http.limits == (90.0, 8)
        http.divide(3)
        assert http.limits == (30.0, 2)
        http.divide(16)  # more replicas than connections: each keeps one
        assert http.limits == (90.0 / 16, 1)
        http.divide(1)
        assert http.limits == (90.0, 8)
