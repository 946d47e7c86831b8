"""Losing the database holds work and recovers by itself (PostgreSQL, a replica on a ManualClock).

The replica reaches PostgreSQL through a TCP proxy the test cuts: every connection dropped and new
ones refused, as when the database host goes away. Meanwhile the replica takes no lease (so it
polls nothing whose result it could not commit), sends nothing it could not record, and says so on
/readyz; when the database answers again its pool reconnects, the change made during the outage is
read at the next poll (against the stored snapshot) and delivered once, and /readyz is ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from bridge.app_keys import CLOCK
from bridge.clock import ManualClock
from bridge.errors import StoreError
from bridge.poll.ownership import PollOwnership
from bridge.store.postgres import PostgresStore
from tests.deliver.test_worker import T0, Receiver, enqueue, serve, webhook, worker_for
from tests.store.conftest import NO_PG, pg_schema

PG_URL = os.environ.get("WATTBRIDGE_TEST_PG")
WB = "00000000-0000-4000-8000-0000000000e1"


class Proxy:
    """A TCP forwarder to PostgreSQL that can be cut (`down`) and restored (`up`) on its port."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._pipes):
            writer.transport.abort()  # a dropped connection, not a clean goodbye
        self._pipes.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


@contextlib.asynccontextmanager
async def proxied_schema() -> AsyncIterator[tuple[str, Proxy]]:
    async with pg_schema() as (url, schema):
        target = urlsplit(url)
        proxy = Proxy(target.hostname or "127.0.0.1", target.port or 5432)
        await proxy.up()
        user = f"{target.username}@" if target.username else ""
        try:
            yield f"postgresql://{user}127.0.0.1:{proxy.port}{target.path}?search_path={schema}", proxy
        finally:
            await proxy.down()


async def ready(bridge) -> tuple[int, dict]:
    resp = await bridge.client.get("/readyz")
    return resp.status, await resp.json()


@pytest.mark.skipif(not PG_URL, reason=NO_PG)
async def test_a_replica_that_loses_the_database_holds_its_work_and_recovers_by_itself(
    make_config, make_bridge, podero, sink, clock
):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    async with proxied_schema() as (url, proxy):
        config = make_config(wallboxes=[{"user_id": user, "wallbox_id": WB}], store={"url": url})
        bridge = await make_bridge(config)
        owner = PollOwnership(
            bridge.store, bridge.app[CLOCK], replica_id="replica-a", period=timedelta(seconds=30)
        )
        assert await owner.owns("podero", "wallboxes")
        await bridge.poll()  # baseline

        await proxy.down()  # the database host is gone
        podero.update_wallbox(WB, is_charging=True)
        clock.advance(timedelta(seconds=60))
        assert not await owner.owns("podero", "wallboxes")  # no lease, so no poll: nothing to commit
        assert owner.held == {}
        with pytest.raises(StoreError):
            await bridge.deliver()  # nothing can be claimed, so nothing is sent
        status, body = await ready(bridge)
        assert status == 503
        assert body["checks"]["store"].startswith("error:")
        assert sink.received == []

        await proxy.up()  # the database answers again: nothing is restarted by hand
        clock.advance(timedelta(seconds=60))
        assert await owner.owns("podero", "wallboxes")
        summary = await bridge.poll()
        assert summary.events == 1  # the change made during the outage, read against the stored state
        await sink.wait_for(1)  # sent by the delivery loop, which backed off and carried on by itself
        await bridge.deliver()  # (and recorded: nothing left in flight)
        status, body = await ready(bridge)
        assert (status, body["checks"]["store"]) == (200, "ok")

    assert [r.json["data"]["resource_id"] for r in sink.received] == [WB]


@pytest.mark.skipif(not PG_URL, reason=NO_PG)
async def test_a_send_whose_record_is_lost_with_the_database_goes_out_again_identically(
    aiohttp_server, json_logs
):
    """The one thing an outage cannot hold back: a send already in flight. Its record fails, so the
    delivery stays claimed-but-pending; once the database is back and the claim has run out, it is
    sent again with the same webhook-id and bytes (receivers deduplicate), and recorded once."""
    clock = ManualClock(T0)
    receiver = Receiver()
    receiver.url = await serve(aiohttp_server, receiver.hook)
    receiver.hold = asyncio.Event()
    async with proxied_schema() as (url, proxy), aiohttp.ClientSession() as session:
        store = PostgresStore(url, pool_size=2)
        await store.open()
        try:
            channel = webhook(receiver.url, session, clock)
            worker = worker_for(store, channel, clock, lease=timedelta(seconds=60))
            delivery = await enqueue(store, channel)
            sending = asyncio.create_task(worker.run_until_idle())
            await asyncio.wait_for(receiver.arrived.get(), 10)  # claimed and at the receiver
            await proxy.down()
            receiver.hold.set()  # the receiver answers 200, but the record cannot be written
            with pytest.raises(StoreError):  # the send's record failed, then so does the next claim
                await asyncio.wait_for(sending, 20)
            await proxy.up()
            clock.advance(timedelta(seconds=61))  # the claim runs out
            assert await worker.run_until_idle() == 1
            done = await store.get_delivery(delivery.id)
            attempts = await store.list_attempts(delivery.id)
        finally:
            await store.close()

    (first, first_body), (again, again_body) = receiver.requests
    assert first["webhook-id"] == again["webhook-id"] == delivery.id
    assert first_body == again_body
    assert done is not None
    assert (done.status, done.attempts, len(attempts)) == ("delivered", 1, 1)
    failed = [
        e
        for e in map(orjson.loads, json_logs.getvalue().splitlines())
        if e["event"] == "delivery.record_failed"
    ]
    assert [e["delivery_id"] for e in failed] == [delivery.id]
