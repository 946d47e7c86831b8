"""Flap detection (#14 item 7) end to end on the injected clock, against a real webhook receiver and
a real SMTP server: a wallbox whose connection toggles every minute notifies as usual until it has
changed more than `changes` times within `within`; then exactly one flapping notice goes out, the
rule's per-change notifications are held back (suppressed, replayable; `explain` says why), and
once it has been quiet for `settle` one settled notice sums it up. Below the threshold nothing
changes; the state survives a restart (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bridge.contracts.schemas import schema_document
from bridge.explain.report import explain
from bridge.rules.flap import FLAPPING_TYPE
from tests.contracts.test_payload_schemas import get_json, validator
from tests.web.conftest import ADMIN_TOKEN
from tests.web.test_status_page import sign_in

WB = "00000000-0000-4000-8000-0000000000f1"
CALM = "00000000-0000-4000-8000-0000000000f2"

RULE = """
[[rule]]
id = "wallbox-connection"
source = "podero.wallbox"
field = "connection"
to = "offline"
resolve = true
severity = "warning"
type = "wallbox.offline"
channels = ["partner", "ops"]
flap = { changes = 6, within = "10m", settle = "15m" }
"""


@pytest.fixture
def wallboxes(podero):
    user = podero.add_user(email="grace@example.com")
    for wid in (WB, CALM):
        podero.add_wallbox(user, wallbox_id=wid, is_ocpp_connected=True)
    return [{"user_id": user, "wallbox_id": WB}, {"user_id": user, "wallbox_id": CALM}]


async def minute(bridge) -> None:
    """One minute on: poll, tick the timers, send what is due (what the running bridge does)."""
    bridge.clock.advance(timedelta(minutes=1))
    await bridge.poll()
    await bridge.tick()
    await bridge.deliver()


async def toggle(bridge, podero, times: int) -> None:
    """The connection flips once a minute, `times` times (Podero derives it from the OCPP link)."""
    for _ in range(times):
        podero.update_wallbox(WB, is_ocpp_connected=podero.wallbox(WB)["connection"] != "online")
        await minute(bridge)


def story(sink) -> list[tuple[str, str]]:
    return [(h.json["type"], h.json["data"]["status"]) for h in sink.verified]


PER_CHANGE = [("wallbox.offline", "firing"), ("wallbox.offline", "resolved")] * 3


async def test_seven_changes_in_ten_minutes_are_one_flapping_notice_then_one_settled(
    make_config, make_bridge, podero, sink, mailbox, wallboxes
):
    bridge = await make_bridge(make_config(rules=RULE, wallboxes=wallboxes))
    await bridge.poll()  # baseline
    await toggle(bridge, podero, 6)  # six changes: not more than six, notified as before
    assert story(sink) == PER_CHANGE
    await toggle(bridge, podero, 1)  # the seventh within 10 minutes: flapping
    await toggle(bridge, podero, 5)  # and it goes on: nothing per change
    await sink.wait_for(7)
    assert story(sink) == [*PER_CHANGE, (FLAPPING_TYPE, "firing")]
    notice = sink.verified[-1].json
    validator(schema_document(FLAPPING_TYPE, ("podero.wallbox",))).validate(notice)
    assert notice["data"]["rule"] == "wallbox-connection"
    assert notice["data"]["changes"] == [{"field": "connection", "old": "online", "new": "offline"}]
    assert notice["data"]["flap"]["changes"] == 7
    assert (notice["data"]["flap"]["within"], notice["data"]["flap"]["threshold"]) == ("10m", 6)

    for _ in range(14):  # quiet for 14 minutes: still flapping
        await minute(bridge)
    assert len(sink.verified) == 7
    await minute(bridge)  # 15 minutes after the last change: settled

    await sink.wait_for(8)
    settled = sink.verified[-1].json
    assert (settled["type"], settled["data"]["status"]) == (FLAPPING_TYPE, "resolved")
    validator(schema_document(FLAPPING_TYPE, ("podero.wallbox",))).validate(settled)
    flap = settled["data"]["flap"]
    assert (flap["changes"], flap["first"], flap["last"], flap["muted"]) == (12, "online", "online", 6)
    assert flap["settled_at"] == settled["timestamp"]
    assert flap["condition_now"] is False  # back online: the rule's condition does not hold

    mails = await mailbox.wait_for(8)
    subjects = [m["Subject"].removeprefix("[wattbridge] ") for m in mails[-2:]]
    assert [s.split(":")[0] for s in subjects] == ["Flapping", "Settled"]
    assert "changed 7 times within 10m" in mails[-2]["Subject"]
    assert "6 notification(s) were held back" in mails[-1].get_content()
    held = await bridge.store.list_deliveries(status="suppressed")
    assert len(held) == 12  # six notifications, on both channels
    assert all((d.last_error or "").startswith("suppressed: flapping since") for d in held)
    # The calm neighbour shares the rule and is never touched by it.
    assert all(h.json["data"]["resource_id"] == WB for h in sink.verified)

    podero.update_wallbox(WB, is_ocpp_connected=False)  # one change after it settled: as before
    await minute(bridge)
    await sink.wait_for(9)
    assert story(sink)[-1] == ("wallbox.offline", "firing")


async def test_below_the_threshold_every_change_notifies_and_the_counting_row_goes(
    make_config, make_bridge, podero, sink, mailbox, wallboxes
):
    bridge = await make_bridge(make_config(rules=RULE, wallboxes=wallboxes))
    await bridge.poll()
    await toggle(bridge, podero, 6)
    assert len(await bridge.store.list_flap_states()) == 1  # counting
    for _ in range(11):  # the window passes without a change
        await minute(bridge)
    await toggle(bridge, podero, 6)  # six more, but the first six are out of the window

    await sink.wait_for(12)
    assert story(sink) == PER_CHANGE * 2
    assert len(await mailbox.wait_for(12)) == 12
    assert await bridge.store.list_deliveries(status="suppressed") == []
    for _ in range(11):
        await minute(bridge)
    assert await bridge.store.list_flap_states() == []  # nothing left to remember


async def test_flapping_survives_a_restart_no_second_notice_and_one_settled(
    store_cfg, make_config, make_bridge, podero, sink, wallboxes
):
    config = make_config(rules=RULE, wallboxes=wallboxes, **store_cfg)
    bridge = await make_bridge(config)
    await bridge.poll()
    await toggle(bridge, podero, 8)
    await bridge.client.close()  # stopped while flapping

    restarted = await make_bridge(config)  # the flap state is read back from the store
    [st] = await restarted.store.list_flap_states()
    assert st.flapping
    assert st.count == 8  # seven started it, one more
    await toggle(restarted, podero, 3)
    for _ in range(15):
        await minute(restarted)
    await sink.wait_for(8)

    kinds = story(sink)
    assert kinds.count((FLAPPING_TYPE, "firing")) == 1
    assert kinds[-1] == (FLAPPING_TYPE, "resolved")
    assert sink.verified[-1].json["data"]["flap"]["changes"] == 11
    assert await restarted.store.list_flap_states() == []


async def test_explain_says_a_held_back_change_was_suppressed_by_flapping(
    make_config, make_bridge, podero, sink, wallboxes
):
    bridge = await make_bridge(make_config(rules=RULE, wallboxes=wallboxes))
    await bridge.poll()
    await toggle(bridge, podero, 8)

    newest, started, *_ = await explain(bridge.store, "wallbox-connection", WB)
    assert newest.trace.outcome == "flapping"
    assert any(r.startswith("partner: suppressed: flapping since") for r in newest.trace.reasons)
    assert [d.delivery.status for d in newest.deliveries] == ["suppressed", "suppressed"]
    assert started.trace.outcome == "flapping"
    assert any("one flapping notice" in r for r in started.trace.reasons)
    for _ in range(15):
        await minute(bridge)
    [settled, *_] = await explain(bridge.store, "wallbox-connection", WB)
    assert (settled.trace.outcome, settled.trace.trigger) == ("settled", "timer")


async def test_the_api_metrics_and_status_page_show_what_flaps(
    make_config, make_bridge, podero, sink, wallboxes
):
    server = {"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN}
    bridge = await make_bridge(make_config(rules=RULE, wallboxes=wallboxes, server=server))
    await bridge.poll()
    await sign_in(bridge.client)
    assert "Nothing is flapping." in await (await bridge.client.get("/")).text()
    await toggle(bridge, podero, 8)

    listed = await get_json(bridge, "/api/flapping", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    [item] = listed["items"]
    assert (item["rule"], item["resource_id"], item["changes"], item["muted"]) == (
        "wallbox-connection",
        WB,
        8,
        2,  # the 7th change's and the 8th's notifications
    )
    assert (item["field"], item["since"], item["settles_at"]) == (
        "connection",
        "2026-11-22T21:01:00Z",
        "2026-11-22T21:23:00Z",
    )
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'wattbridge_flapping_resources{rule="wallbox-connection"} 1.0' in metrics
    page = await (await bridge.client.get("/")).text()
    section = page.split('id="flapping"')[1].split("</section>")[0]
    assert "<code>wallbox-connection</code>" in section
    assert f"podero/podero.wallbox/{WB}" in section
    assert "2026-11-22 21:23:00Z if connection stays put" in section

    for _ in range(15):
        await minute(bridge)
    assert (await get_json(bridge, "/api/flapping", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}))[
        "items"
    ] == []
    metrics = await (await bridge.client.get("/metrics")).text()
    assert 'wattbridge_flapping_resources{rule="wallbox-connection"} 0.0' in metrics


async def test_a_night_of_flapping_is_one_morning_digest_with_the_notice_and_its_summary(
    make_config, make_bridge, podero, sink, mailbox, wallboxes
):
    # 21:00 UTC is 22:00 in Berlin: the whole spell is muted, and deferred to 07:00 (06:00 UTC).
    night = RULE.replace(
        'channels = ["partner", "ops"]',
        'channels = ["ops"]\nmute = [{ from = "22:00", to = "07:00", timezone = "Europe/Berlin" }]',
    )
    bridge = await make_bridge(make_config(rules=night, wallboxes=wallboxes))
    await bridge.poll()
    await toggle(bridge, podero, 9)  # ends online: the rule's last firing was resolved meanwhile
    for _ in range(16):
        await minute(bridge)
    assert mailbox.messages == []

    bridge.clock.set(datetime(2026, 11, 23, 6, 0, tzinfo=UTC))
    await bridge.digest()
    await bridge.deliver()

    [digest] = await mailbox.wait_for(1)
    text = digest.get_content()
    assert "Flapping: wallbox-connection" in text
    assert "Settled: wallbox-connection" in text
    # The six per-change notifications before it flapped were firing/resolved pairs: left out.
    assert text.count("wallbox.offline") == 0


async def test_reminders_due_while_flapping_are_held_back_and_resume_once_settled(
    make_config, make_bridge, podero, sink, wallboxes
):
    reminding = RULE.replace("resolve = true", 'resolve = true\nrepeat = "4m"').replace(
        'channels = ["partner", "ops"]', 'channels = ["partner"]'
    )
    bridge = await make_bridge(make_config(rules=reminding, wallboxes=wallboxes))
    await bridge.poll()
    await toggle(bridge, podero, 7)  # ends offline, flapping: the rule fires and keeps firing
    for _ in range(15):  # quiet and offline: reminders come due every 4 minutes, all held back
        await minute(bridge)
    await sink.wait_for(8)
    assert story(sink)[6:] == [(FLAPPING_TYPE, "firing"), (FLAPPING_TYPE, "resolved")]
    assert sink.verified[-1].json["data"]["flap"]["condition_now"] is True
    assert sink.verified[-1].json["data"]["flap"]["muted"] == 4  # the 7th change, 3 reminders
    for _ in range(4):  # settled: the next reminder goes out again
        await minute(bridge)
    await sink.wait_for(9)
    assert story(sink)[-1] == ("wallbox.offline", "firing")
