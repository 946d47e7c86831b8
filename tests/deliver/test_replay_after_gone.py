"""A 410 disables a channel; its dead letter is replayable once the receiver is fixed (#18), end to end.

410 → dead → receiver fixed → replay refused (409, with how to re-enable; never 202 and dead again)
→ the operator re-enables the channel → replay → delivered with the same webhook-id and the same
bytes. Through the API, the CLI and the status page: one implementation (bridge/deliver/replay.py).
"""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from bridge.cli.main import main
from bridge.model import CHANNEL_SOURCE, ResourceKey
from tests.conftest import WEBHOOK_SECRET
from tests.web.conftest import ADMIN_TOKEN, CSRF

WB = "00000000-0000-4000-8000-0000000000d1"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def gone(make_config, make_bridge, podero, sink):
    """The partner's receiver answered 410 Gone: the channel is disabled and the delivery dead."""
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    config = make_config(
        wallboxes=[{"user_id": user, "wallbox_id": WB}],
        server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN},
    )
    bridge = await make_bridge(config)
    await bridge.poll()  # baseline
    sink.respond_with(410)
    podero.update_wallbox(WB, is_charging=True, charge_rate_w=7200)
    bridge.clock.advance(timedelta(seconds=60))
    assert (await bridge.poll()).events == 1
    await bridge.deliver()
    [dead] = await bridge.store.list_deliveries(status="dead")
    assert dead.last_error == "HTTP 410 Gone: channel disabled"
    state = await channel_state(bridge)
    assert state["status"] == "disabled"
    sink.clear_script()  # the receiver is fixed: it answers 204 again
    return bridge, dead


async def channel_state(bridge):
    snap = await bridge.store.get_snapshot(
        ResourceKey(source=CHANNEL_SOURCE, provider="bridge", resource_id="partner")
    )
    return snap.state


def assert_delivered_as_first_sent(sink, dead_id):
    first, again = sink.verified
    assert (first.status, again.status) == (410, 204)
    assert first.webhook_id == again.webhook_id == dead_id
    assert first.body == again.body


async def test_api_replay_is_refused_until_the_channel_is_enabled_then_delivers_the_same_bytes(gone, sink):
    bridge, dead = gone
    resp = await bridge.client.post(f"/api/deliveries/{dead.id}/replay", headers=AUTH)
    assert resp.status == 409
    body = await resp.json()
    assert body["error"] == "channel disabled"
    assert "POST /api/channels/partner/enable" in body["detail"]
    assert (await bridge.store.get_delivery(dead.id)).status == "dead"  # nothing queued to die again
    await bridge.deliver()
    assert len(sink.verified) == 1

    resp = await bridge.client.post("/api/channels/partner/enable", headers=AUTH)
    assert resp.status == 200
    enabled = await resp.json()
    assert (enabled["status"], enabled["was_disabled"]) == ("ok", True)
    assert "replay" in enabled["detail"]
    assert (await channel_state(bridge))["status"] == "ok"

    resp = await bridge.client.post(f"/api/deliveries/{dead.id}/replay", headers=AUTH)
    assert resp.status == 202
    await sink.wait_for(2)
    await bridge.deliver()
    assert (await bridge.store.get_delivery(dead.id)).status == "delivered"
    assert_delivered_as_first_sent(sink, dead.id)

    again = await bridge.client.post("/api/channels/partner/enable", headers=AUTH)
    assert (await again.json())["was_disabled"] is False
    unknown = await bridge.client.post("/api/channels/nope/enable", headers=AUTH)
    assert unknown.status == 404


async def cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


async def test_cli_replay_reads_the_disabled_channel_from_the_store_and_says_how(
    gone, sink, tmp_path, capsys
):
    bridge, dead = gone
    config = tmp_path / "cli.toml"
    config.write_text(
        textwrap.dedent(f"""
        [store]
        url = "sqlite:///{tmp_path / "bridge.db"}"
        [outbound]
        allow = ["127.0.0.0/8"]
        [channels.partner]
        kind = "webhook"
        url = "{sink.url}"
        secret = "{WEBHOOK_SECRET}"
        """)
    )
    assert await cli("deliveries", "replay", "-c", str(config), dead.id) == 1
    err = capsys.readouterr().err
    assert "channel 'partner' is disabled" in err
    assert "POST /api/channels/partner/enable" in err
    assert (
        await cli(
            "deliveries",
            "replay",
            "-c",
            str(config),
            "--channel",
            "partner",
            "--since",
            "2026-11-01T00:00:00+00:00",
        )
        == 1
    )
    assert (await bridge.store.get_delivery(dead.id)).status == "dead"

    assert (await bridge.client.post("/api/channels/partner/enable", headers=AUTH)).status == 200
    assert await cli("deliveries", "replay", "-c", str(config), dead.id) == 0
    assert "1 delivery(ies) pending again" in capsys.readouterr().out
    bridge.clock.set(datetime.now(UTC))  # the CLI replays on the wall clock: due "now" there
    await bridge.deliver()
    assert (await bridge.store.get_delivery(dead.id)).status == "delivered"
    assert_delivered_as_first_sent(sink, dead.id)


async def test_status_page_refuses_the_replay_offers_enable_and_then_delivers(gone, sink):
    bridge, dead = gone
    client = bridge.client
    assert (await client.post("/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)).status == 303
    page = await (await client.get("/")).text()
    csrf = CSRF.search(page).group(1)
    assert 'aria-label="Enable partner"' in page

    resp = await client.post("/replay", data={"delivery_id": dead.id, "csrf": csrf}, allow_redirects=False)
    assert resp.status == 303
    notice = await (await client.get(resp.headers["Location"])).text()
    assert "channel <code>partner</code> is disabled" in notice
    assert (await bridge.store.get_delivery(dead.id)).status == "dead"

    resp = await client.post(
        "/channels/enable", data={"channel": "partner", "csrf": csrf}, allow_redirects=False
    )
    assert resp.status == 303
    page = await (await client.get(resp.headers["Location"])).text()
    assert "Channel <code>partner</code> is enabled again" in page
    assert 'aria-label="Enable partner"' not in page

    resp = await client.post("/replay", data={"delivery_id": dead.id, "csrf": csrf}, allow_redirects=False)
    assert resp.headers["Location"] == f"/?notice=replayed&id={dead.id}"
    await sink.wait_for(2)
    await bridge.deliver()
    assert (await bridge.store.get_delivery(dead.id)).status == "delivered"
    assert_delivered_as_first_sent(sink, dead.id)
