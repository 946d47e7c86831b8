"""Acknowledge / snooze links and escalation end to end (#14): Podero simulator → bridge → webhook
sink and aiosmtpd, on the ManualClock. Links are followed with real HTTP requests to the app: the
GET shows a confirmation page and changes nothing; the POST from its button acts."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import pytest

from bridge.web.links import LINKS
from tests.conftest import WEBHOOK_SECRET
from tests.store.conftest import pg_schema

WB = "00000000-0000-4000-8000-0000000000d1"
PUBLIC = "https://bridge.example.com"
TOKEN = "admin-token-for-tests-0123456789"

RULE = """
[[rule]]
id = "action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
resolve = true
channels = ["partner"]
{extra}
"""


@pytest.fixture
def wallbox(podero):
    user = podero.add_user(email="grace@example.com")
    return {"user_id": user, "wallbox_id": podero.add_wallbox(user, wallbox_id=WB)}


@pytest.fixture
def configure(make_config, sink, wallbox):
    def make(extra: str, **more):
        hook = {"kind": "webhook", "secret": WEBHOOK_SECRET}
        channels = {
            "partner": {**hook, "url": sink.url},
            "oncall": {**hook, "url": sink.url.replace("/partner", "/oncall")},
            "ops": {"kind": "email", "to": ["ops@example.com"], "from": "wattbridge@example.com"},
        }
        server = {"listen": "127.0.0.1:0", "admin_token": TOKEN, "public_url": PUBLIC}
        return make_config(
            rules=RULE.format(extra=extra), wallboxes=[wallbox], server=server, channels=channels, **more
        )

    return make


def got(sink):
    """What the sink received, once per webhook-id: delivery is at least once, and on PostgreSQL the
    app's own delivery loop may still hold a send when the test jumps the clock past its lease."""
    seen: dict[str, object] = {}
    for h in sink.received:
        seen.setdefault(h.webhook_id or str(id(h)), h)
    return list(seen.values())


async def until(sink, n: int):
    while len(got(sink)) < n:
        await sink.wait_for(len(sink.received) + 1)
    return got(sink)[:n]


async def minutes(bridge, n: int) -> None:
    for _ in range(n):
        bridge.clock.advance(timedelta(minutes=1))
        await bridge.tick()
        await bridge.deliver()


def sent_minutes(hooks, start: datetime) -> list[int]:
    return [(datetime.fromisoformat(h.json["timestamp"]) - start) // timedelta(minutes=1) for h in hooks]


def token(url: str) -> str:
    return url.rsplit("/", 1)[1]


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC + "/links/")
    return urlsplit(url).path


async def fire(bridge, podero):
    await bridge.poll()  # baseline
    podero.add_action(WB, code="reauthenticate")
    start = bridge.clock.now()
    await bridge.poll()
    await bridge.deliver()
    return start


async def test_an_ack_through_its_link_stops_the_reminders_until_it_resolves_then_rearms(
    configure, make_bridge, podero, sink, store_cfg
):
    bridge = await make_bridge(configure('repeat = "15m"', **store_cfg))
    start = await fire(bridge, podero)
    [first] = await until(sink, 1)
    links = first.json["data"]["links"]
    assert set(links["snooze"]) == {"1h", "4h", "1d"}

    # A mail scanner's GET shows the page and does nothing: the 15m reminder still goes out.
    page = await bridge.client.get(path_of(links["acknowledge"]))
    assert page.status == 200
    text = await page.text()
    assert "action-needed" in text
    assert '<form method="post">' in text
    assert "Acknowledge" in text
    await minutes(bridge, 16)
    await until(sink, 2)
    assert sent_minutes(got(sink), start) == [0, 15]
    signer, now = bridge.app[LINKS], bridge.clock.now()
    first_claim = signer.verify(token(links["acknowledge"]), now)
    reminder_claim = signer.verify(token(got(sink)[1].json["data"]["links"]["acknowledge"]), now)
    assert reminder_claim.firing_seq == first_claim.firing_seq == 1  # a reminder names the same firing

    done = await bridge.client.post(path_of(links["acknowledge"]), data={"name": "Ada <b>"})
    assert done.status == 200
    assert "Acknowledged by Ada b" in await done.text()
    await minutes(bridge, 120)
    assert sent_minutes(got(sink), start) == [0, 15]  # no reminder after the ack

    [firing] = (await (await bridge.client.get("/api/firings", headers=auth())).json())["items"]
    assert (firing["acked_by"], firing["paused"][:27]) == ("Ada b", "acknowledged by Ada b at 20")

    podero.resolve_action(WB, "reauthenticate")
    await bridge.poll()
    await bridge.deliver()
    await until(sink, 3)
    assert got(sink)[2].json["data"]["status"] == "resolved"
    assert "links" not in got(sink)[2].json["data"]

    again = await bridge.client.post(path_of(links["acknowledge"]))  # the old firing's link is spent
    assert again.status == 409
    assert "has resolved" in await again.text()

    podero.add_action(WB, code="reauthenticate")  # a new firing: re-armed, reminders again
    restart = bridge.clock.now()
    await bridge.poll()
    await bridge.deliver()
    await minutes(bridge, 16)
    await until(sink, 5)
    assert sent_minutes(got(sink)[3:], restart) == [0, 15]
    assert got(sink)[3].json["data"]["links"]["acknowledge"] != links["acknowledge"]


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


async def test_a_snooze_link_pauses_the_reminders_and_they_resume_when_it_ends(
    configure, make_bridge, podero, sink
):
    bridge = await make_bridge(configure('repeat = "15m"'))
    start = await fire(bridge, podero)
    [first] = await until(sink, 1)
    await minutes(bridge, 5)
    done = await bridge.client.post(path_of(first.json["data"]["links"]["snooze"]["1h"]))
    assert done.status == 200
    assert "Snoozed by a link sent to partner until" in await done.text()
    await minutes(bridge, 90)
    await until(sink, 4)
    # 15, 30, 45 and 60 fall in the snooze (5 → 65): the reminder waits for its end, then every 15m.
    assert sent_minutes(got(sink), start) == [0, 65, 80, 95]


async def test_escalation_goes_to_oncall_when_nobody_acknowledges_and_not_when_someone_does(
    configure, make_bridge, podero, sink, store_cfg
):
    steps = 'escalate = [{after = "30m", channels = ["oncall"]}, {after = "1h", channels = ["ops"]}]'
    bridge = await make_bridge(configure(steps, **store_cfg))
    [rule] = (await (await bridge.client.get("/api/rules", headers=auth())).json())["items"]
    assert rule["escalate"] == [
        {"after_s": 1800.0, "channels": ["oncall"]},
        {"after_s": 3600.0, "channels": ["ops"]},
    ]
    start = await fire(bridge, podero)
    await minutes(bridge, 45)
    await until(sink, 2)
    oncall = [h for h in got(sink) if h.name == "oncall"]
    assert sent_minutes(oncall, start) == [30]
    assert oncall[0].json["data"]["escalation"] == 1
    assert oncall[0].verified

    # Someone acknowledges (admin API): the 1h step to ops never goes out.
    created = await bridge.client.post(
        "/api/acks", json={"rule": "action-needed", "resource_id": WB, "by": "bo"}, headers=auth()
    )
    assert created.status == 201
    assert (await created.json())["acked_by"] == "bo"
    await minutes(bridge, 60)
    assert [h.name for h in got(sink)] == ["partner", "oncall"]

    podero.resolve_action(WB, "reauthenticate")  # the resolve reaches every channel the firing did
    await bridge.poll()
    await bridge.deliver()
    await until(sink, 4)
    assert sorted(h.name for h in got(sink)[2:]) == ["oncall", "partner"]
    assert {h.json["data"]["status"] for h in got(sink)[2:]} == {"resolved"}


async def test_the_second_escalation_step_emails_ops_with_the_links(
    configure, make_bridge, podero, sink, mailbox
):
    steps = 'escalate = [{after = "30m", channels = ["oncall"]}, {after = "1h", channels = ["ops"]}]'
    bridge = await make_bridge(configure(steps))
    await fire(bridge, podero)
    await minutes(bridge, 61)
    [mail] = await mailbox.wait_for(1)
    text = mail.get_content()
    assert "Escalated (step 2)" in text
    ack = re.search(r"Acknowledge \(stops reminders and escalation\): (\S+)", text)
    assert ack is not None
    done = await bridge.client.post(path_of(ack.group(1)), data={"name": "ops"})
    assert done.status == 200
    [firing] = (await (await bridge.client.get("/api/firings", headers=auth())).json())["items"]
    assert (firing["acked_by"], firing["escalated"]) == ("ops", 2)


async def test_a_tampered_or_expired_link_gets_a_page_that_says_so(configure, make_bridge, podero, sink):
    bridge = await make_bridge(configure('repeat = "1h"'))
    await fire(bridge, podero)
    [first] = await until(sink, 1)
    url = path_of(first.json["data"]["links"]["acknowledge"])
    head, payload, mac = url.rsplit("/", 1)[1].split(".")
    forged = f"/links/{head}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{mac}"
    for method in (bridge.client.get, bridge.client.post):
        resp = await method(forged)
        assert resp.status == 403
        text = await resp.text()
        assert "signature does not match" in text
        assert "Traceback" not in text
    garbage = await bridge.client.get("/links/not-a-token")
    assert garbage.status == 400

    bridge.clock.advance(timedelta(days=8))  # link_ttl is 7d; the firing is still open
    expired = await bridge.client.post(url)
    assert expired.status == 410
    assert "expired at" in await expired.text()
    [firing] = (await (await bridge.client.get("/api/firings", headers=auth())).json())["items"]
    assert firing["acked_at"] is None


async def test_escalation_and_an_ack_survive_a_restart(configure, make_bridge, podero, sink, store_cfg):
    config = configure('repeat = "20m"\nescalate = [{after = "30m", channels = ["oncall"]}]', **store_cfg)
    bridge = await make_bridge(config)
    start = await fire(bridge, podero)
    await minutes(bridge, 10)
    await bridge.client.close()
    restarted = await make_bridge(config)
    await minutes(restarted, 25)  # to 35m: the 20m reminder and the 30m escalation, once each
    await until(sink, 3)
    assert [(h.name, m) for h, m in zip(got(sink), sent_minutes(got(sink), start), strict=True)] == [
        ("partner", 0),
        ("partner", 20),
        ("oncall", 30),
    ]
    ack = await restarted.client.post(
        "/api/acks", json={"rule": "action-needed", "resource_id": WB, "by": "cy"}, headers=auth()
    )
    assert ack.status == 201
    await restarted.client.close()
    again = await make_bridge(config)
    await minutes(again, 90)
    assert len(got(sink)) == 3  # acknowledged before the restart: still nothing more

    explained = await again.client.get(f"/api/explain?rule=action-needed&resource={WB}", headers=auth())
    reasons = [r for ev in (await explained.json())["evaluations"] for r in ev["reasons"]]
    assert any(r.startswith("acknowledged by cy at ") for r in reasons)


async def test_the_cli_acknowledges_through_the_running_bridge_and_lists_the_firings(
    configure, make_bridge, podero, sink, tmp_path, capsys
):
    import asyncio

    from bridge.cli.main import main

    bridge = await make_bridge(configure('repeat = "15m"'))
    start = await fire(bridge, podero)
    cfg = tmp_path / "cli.toml"
    cfg.write_text(f'[server]\nadmin_token = "{TOKEN}"\n[rules]\npaths = []\n')
    base = str(bridge.client.make_url("")).rstrip("/")
    argv = ["ack", "-c", str(cfg), "--url", base, "--rule", "action-needed", "--resource", WB, "--by", "dee"]
    assert await asyncio.to_thread(main, argv) == 0
    assert "acknowledged by dee at 2026-11-22T21:00:00Z" in capsys.readouterr().out
    assert await asyncio.to_thread(main, argv) == 1  # already acknowledged: said, exit 1
    assert "already acknowledged by dee" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["ack", "-c", str(cfg), "--url", base, "--list"]) == 0
    assert (
        f"action-needed podero.wallbox {WB} (provider podero): acknowledged by dee" in capsys.readouterr().out
    )
    await minutes(bridge, 60)
    assert sent_minutes(got(sink), start) == [0]


async def test_without_a_public_url_or_on_a_rule_that_neither_repeats_nor_escalates_there_are_no_links(
    make_config, make_bridge, podero, sink, wallbox
):
    rules = RULE.format(extra="") + RULE.format(extra='repeat = "1h"').replace('"action-needed"', '"again"')
    server = {"listen": "127.0.0.1:0", "admin_token": TOKEN, "public_url": PUBLIC}
    bridge = await make_bridge(make_config(rules=rules, wallboxes=[wallbox], server=server))
    await fire(bridge, podero)
    by_rule = {h.json["data"]["rule"]: h.json["data"] for h in await until(sink, 2)}
    assert "links" not in by_rule["action-needed"]
    assert "links" in by_rule["again"]

    unlinked = await make_bridge(make_config(rules=rules, wallboxes=[wallbox]))
    podero.resolve_action(WB, "reauthenticate")
    await unlinked.poll()
    podero.add_action(WB, code="reauthenticate")
    await unlinked.poll()
    await unlinked.deliver()
    fresh = [h for h in await until(sink, 6) if h.json["data"]["status"] == "firing"][2:]
    assert [("links" in h.json["data"]) for h in fresh] == [False, False]


async def test_an_ack_taken_by_another_replica_stops_the_owners_reminders(
    configure, make_bridge, podero, sink
):
    """Two bridges on one PostgreSQL store: the one that polls fires and reminds; an ack through the
    other's API is seen by the first at its next tick, and its own stale write cannot undo it."""
    async with pg_schema() as (url, schema):
        config = configure('repeat = "15m"', store={"url": f"{url}?search_path={schema}"})
        owner = await make_bridge(config)
        other = await make_bridge(config)
        start = await fire(owner, podero)
        await minutes(owner, 16)
        await until(sink, 2)
        created = await other.client.post(
            "/api/acks", json={"rule": "action-needed", "resource_id": WB, "by": "eve"}, headers=auth()
        )
        assert created.status == 201
        await minutes(owner, 60)
        assert sent_minutes(got(sink), start) == [0, 15]
        [firing] = (await (await owner.client.get("/api/firings", headers=auth())).json())["items"]
        assert firing["acked_by"] == "eve"
