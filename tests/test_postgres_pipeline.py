"""The whole pipeline on `postgresql://`: Podero simulator → poll → rules → outbox in PostgreSQL →
signed webhook; a second bridge on the same database (a restart, or another replica) sees it all;
`wattbridge run` starts, answers /readyz and drains on PostgreSQL; `check` names a bad store URL."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta

import aiohttp

from bridge.cli.main import main
from tests.store.conftest import pg_schema
from tests.store.factories import result
from tests.test_serve import read_until, wait_healthy

WB = "00000000-0000-4000-8000-0000000000b1"
RULE = '[[rule]]\nid = "a"\nsource = "podero.wallbox"\nfield = "is_charging"\nto = true\nchannels = ["ops"]\n'
CHANNEL = (
    '[outbound]\nallow = ["127.0.0.0/8"]\n'
    '[channels.ops]\nkind = "webhook"\nurl = "http://127.0.0.1:9/hooks"\nsecret = "whsec_ZGVmYXVsdA=="\n'
)


def write_config(tmp_path, store_url: str, extra: str = "") -> str:
    (tmp_path / "rules").mkdir(exist_ok=True)
    (tmp_path / "rules" / "r.toml").write_text(RULE)
    (tmp_path / "config.toml").write_text(f'[store]\nurl = "{store_url}"\n{extra}{CHANNEL}')
    return str(tmp_path / "config.toml")


async def test_a_change_becomes_one_webhook_through_a_postgres_outbox(make_config, make_bridge, podero, sink):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    async with pg_schema() as (url, schema):
        config = make_config(
            wallboxes=[{"user_id": user, "wallbox_id": WB}], store={"url": f"{url}?search_path={schema}"}
        )
        bridge = await make_bridge(config)
        await bridge.poll()  # baseline
        podero.update_wallbox(WB, is_charging=True, charge_rate_w=7200)
        bridge.clock.advance(timedelta(seconds=60))
        assert (await bridge.poll()).events == 1
        await bridge.deliver()
        await bridge.poll()  # the same state again: nothing new
        await bridge.deliver()

        assert len(sink.received) == 1
        assert sink.received[0].verified
        assert sink.received[0].json["data"]["resource_id"] == WB
        [delivery] = await bridge.store.list_deliveries(channel="partner")
        assert delivery.status == "delivered"

        # Another bridge on the same database (a restart or a second replica) knows the baseline,
        # the event and the delivered outbox: it polls without firing again and sends nothing.
        again = await make_bridge(config)
        assert (await again.poll()).events == 0
        assert await again.deliver() == 0
        assert len(sink.received) == 1
        assert [e.id for e in await again.store.list_events()] == [delivery.event_id]


async def test_wattbridge_run_serves_and_drains_on_postgres(tmp_path, unused_tcp_port):
    async with pg_schema() as (url, schema):
        server = f'[server]\nlisten = "127.0.0.1:{unused_tcp_port}"\n[cluster]\nreplica_id = "replica-a"\n'
        path = write_config(tmp_path, f"{url}?search_path={schema}", server)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "--log-format", "json", "run", "-c", path,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        try:
            await wait_healthy(unused_tcp_port, proc)
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{unused_tcp_port}/readyz") as resp,
            ):
                assert resp.status == 200
                ready = await resp.json()
            # Which replica answered, and the watch groups it polls (leases are taken at first runs).
            assert ready["replica"]["id"] == "replica-a"
            assert isinstance(ready["replica"]["leases"], list)
            proc.send_signal(signal.SIGTERM)
            await read_until(proc.stderr, "bridge.stopped")
            assert await asyncio.wait_for(proc.wait(), timeout=15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_check_names_an_unsupported_store_url_with_its_line(tmp_path, capsys):
    assert main(["check", "-c", write_config(tmp_path, "mysql://db/wattbridge")]) == 1
    err = capsys.readouterr().err
    assert f"{tmp_path / 'config.toml'}:2: store.url: unsupported store 'mysql'" in err
    assert "Traceback" not in err


def test_check_names_an_unreachable_postgres_without_its_password(tmp_path, capsys):
    assert main(["check", "-c", write_config(tmp_path, "postgresql://bridge:s3cret@127.0.0.1:1/x")]) == 2
    err = capsys.readouterr().err
    assert "wattbridge: cannot open PostgreSQL store postgresql://bridge:***@127.0.0.1:1/x" in err
    assert "s3cret" not in err
    assert "Traceback" not in err


async def test_two_replicas_polling_one_change_together_notify_once(make_config, make_bridge, podero, sink):
    # Two bridges on one database see the same change at the same time: the snapshot's
    # compare-and-swap lets one commit its transition; the other's transaction rolls back (counted).
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    async with pg_schema() as (url, schema):
        config = make_config(
            wallboxes=[{"user_id": user, "wallbox_id": WB}], store={"url": f"{url}?search_path={schema}"}
        )
        a, b = await make_bridge(config), await make_bridge(config)
        await a.poll()  # baseline
        for flips in range(1, 4):
            podero.update_wallbox(WB, is_charging=flips % 2 == 1)
            a.clock.advance(timedelta(seconds=60))
            await asyncio.gather(a.poll(), b.poll())
            # Sends finish (and are recorded) before the shared clock jumps a whole claim lease:
            # until neither replica has anything due or in flight (either one's background worker,
            # woken by the other's NOTIFY, may have claimed a send while the other was delivering).
            while await a.deliver() + await b.deliver():
                pass

        events = await a.store.list_events()
        assert len(events) == 2  # charging started twice (rule `to = true`), each once
        assert sorted(e.sequence for e in events) == [1, 2]
        assert len(sink.received) == 2
        assert len({r.webhook_id for r in sink.received}) == 2


async def test_a_replica_sends_what_another_committed_and_could_not_send(make_config, make_bridge, sink):
    # Replica A committed a delivery and died before sending it: nothing wakes replica B's worker,
    # so on a shared store it looks at the outbox again every second and sends it.
    async with pg_schema() as (url, schema):
        config = make_config(store={"url": f"{url}?search_path={schema}"})
        b = await make_bridge(config)
        await asyncio.sleep(0.1)  # B's worker has found the outbox empty and waits
        r = result(channels=("partner",), at=b.clock.now())
        await b.store.commit([r])  # as replica A would have: no wake-up reaches B
        for _ in range(20):  # bounded: each step is one second of B's clock
            if sink.received:
                break
            b.clock.advance(timedelta(seconds=1))
            await asyncio.sleep(0.05)
        [got] = await sink.wait_for(1)
        assert got.body == r.deliveries[0].body
        assert got.webhook_id == r.deliveries[0].id
