"""End to end: Podero simulator → wattbridge app → verifying webhook sink and SMTP mailbox.

A wallbox that starts charging becomes exactly one signed webhook; one that needs action becomes one
webhook and one email; the first observation, a failed poll and a volatile-only read fire nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from bridge.app_keys import DELIVERY

WB = "00000000-0000-4000-8000-0000000000b1"


@pytest.fixture
def wallbox(podero):
    user = podero.add_user(email="ada@example.com")
    wallbox_id = podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True, is_charging=False)
    return {"user_id": user, "wallbox_id": wallbox_id}


@pytest.fixture
async def bridge(make_config, make_bridge, wallbox):
    b = await make_bridge(make_config(wallboxes=[wallbox]))
    await b.poll()  # baseline
    return b


async def test_the_first_observation_is_a_baseline_and_fires_nothing(bridge, sink, mailbox):
    assert await bridge.deliver() == 0
    assert sink.received == []
    assert mailbox.messages == []
    assert await bridge.store.list_events() == []


async def test_charging_started_gives_exactly_one_signed_webhook(bridge, podero, sink):
    podero.update_wallbox(WB, is_charging=True, charge_rate_w=7200)
    bridge.clock.advance(timedelta(seconds=60))
    summary = await bridge.poll()
    assert summary.events == 1
    await sink.wait_for(1)
    await bridge.deliver()
    await bridge.poll()  # the same state again: nothing new
    await bridge.deliver()

    assert len(sink.received) == 1
    hook = sink.received[0]
    assert hook.verified
    body = hook.json
    assert body["type"] == "wallbox.charging_started"
    data = body["data"]
    assert data["rule"] == "charging-started"
    assert data["status"] == "firing"
    assert data["source"] == "podero.wallbox"
    assert data["provider"] == "podero"
    assert data["resource_id"] == WB
    assert data["sequence"] == 1
    assert {"field": "is_charging", "old": False, "new": True} in data["changes"]
    assert data["state"]["is_charging"] is True


async def test_action_needed_gives_one_webhook_and_one_email_with_the_rendered_subject(
    bridge, podero, sink, mailbox
):
    podero.add_action(WB, code="reauthenticate")
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await sink.wait_for(1)
    await mailbox.wait_for(1)
    await bridge.deliver()

    assert [h.json["type"] for h in sink.received] == ["wallbox.action_needed"]
    assert len(mailbox.messages) == 1
    message = mailbox.messages[0]
    subject = str(message["Subject"])
    assert "needs action" in subject
    assert "ada@example.com" in subject
    assert "reauthenticate" in message.get_content()
    assert message["Message-ID"]


@pytest.mark.parametrize("kind", ["status", "garbage", "truncated", "html"])
async def test_a_failed_poll_fires_nothing_and_changes_no_state(bridge, podero, sink, kind):
    podero.update_wallbox(WB, is_charging=True)
    podero.fail("wallbox", kind=kind, status=500, times=1)
    summary = await bridge.poll()
    assert not summary.ok
    assert summary.events == 0
    assert await bridge.deliver() == 0
    assert sink.received == []
    snapshot = next(iter((await bridge.store.get_snapshots("podero", "podero.wallbox")).values()))
    assert snapshot.state is not None
    assert snapshot.state["is_charging"] is False


async def test_a_change_made_during_an_outage_is_notified_once_after_recovery(bridge, podero, sink):
    podero.fail("wallbox", status=503, times=3)
    podero.update_wallbox(WB, is_charging=True)
    for _ in range(3):
        bridge.clock.advance(timedelta(seconds=60))
        summary = await bridge.poll()
        assert not summary.ok
    bridge.clock.advance(timedelta(seconds=60))
    summary = await bridge.poll()
    assert summary.ok
    assert summary.events == 1
    await bridge.poll()
    await sink.wait_for(1)
    await bridge.deliver()
    assert len(sink.received) == 1


async def test_reads_that_differ_only_in_volatile_fields_write_nothing(bridge, podero):
    before = await bridge.store.get_snapshots("podero", "podero.wallbox")
    bridge.clock.advance(timedelta(minutes=5))  # the simulator moves updated_at and re-signs URLs
    podero.add_action(WB, code="information")
    await bridge.poll()
    middle = await bridge.store.get_snapshots("podero", "podero.wallbox")
    bridge.clock.advance(timedelta(minutes=5))
    summary = await bridge.poll()
    after = await bridge.store.get_snapshots("podero", "podero.wallbox")
    assert summary.changed == 0
    assert middle[WB].digest != before[WB].digest
    assert after[WB].updated_at == middle[WB].updated_at


async def test_health_and_readiness(bridge):
    resp = await bridge.client.get("/healthz")
    assert resp.status == 200
    resp = await bridge.client.get("/readyz")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["checks"]["store"] == "ok"
    assert body["providers"] == {"podero": "ok"}


async def test_a_revoked_token_is_renewed_once_without_a_spurious_event(bridge, podero, sink):
    tokens_before = podero.token_requests
    podero.revoke_tokens()
    bridge.clock.advance(timedelta(seconds=60))
    summary = await bridge.poll()
    assert summary.ok
    assert summary.events == 0
    assert podero.token_requests == tokens_before + 1
    assert await bridge.deliver() == 0
    assert sink.received == []


async def test_a_soft_deleted_wallbox_is_a_deleted_at_change_not_a_disappearance(bridge, podero, sink):
    podero.soft_delete_wallbox(WB)
    bridge.clock.advance(timedelta(seconds=60))
    summary = await bridge.poll()
    assert summary.ok
    snapshot = (await bridge.store.get_snapshots("podero", "podero.wallbox"))[WB]
    assert snapshot.state is not None
    assert snapshot.state["deleted_at"] is not None


async def test_a_channel_retry_schedule_ends_in_a_dead_letter_that_replays_with_the_same_id(
    make_config, make_bridge, podero, sink, wallbox
):
    config = make_config(wallboxes=[wallbox])
    channels = dict(config.channels)
    channels["partner"] = channels["partner"].model_copy(
        update={"retry": [timedelta(0), timedelta(seconds=30)]}
    )
    bridge = await make_bridge(config.model_copy(update={"channels": channels}))
    await bridge.poll()
    sink.respond_with(500, 500)
    podero.update_wallbox(WB, is_charging=True)
    await bridge.poll()
    await bridge.deliver()
    bridge.clock.advance(timedelta(seconds=40))  # 30 s ± 20 % jitter
    await bridge.deliver()
    [dead] = await bridge.store.list_deliveries(status="dead")
    assert dead.attempts == 2
    assert [a.status_code for a in await bridge.store.list_attempts(dead.id)] == [500, 500]
    assert await bridge.store.replay([dead.id], bridge.clock.now()) == 1
    bridge.app[DELIVERY].notify()
    await sink.wait_for(1)
    await bridge.deliver()
    ids = {h.webhook_id for h in sink.received}
    assert ids == {dead.id}
    assert len({h.body for h in sink.received}) == 1  # byte-identical on every attempt and the replay
