"""`GET /api/explain` and `wattbridge explain` (#14): why a rule did or did not notify about a
resource, from persisted traces: the change, each condition, what stopped it, the deliveries and
their attempts. On the live bridge (Podero simulator → webhook sink), on the injected clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from bridge.cli.main import main
from bridge.model import Silence

WB = "00000000-0000-4000-8000-0000000000e1"


async def started(make_api, api_config, podero):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB)
    api = await make_api(api_config(wallboxes=[{"user_id": user, "wallbox_id": WB}]))
    await api.bridge.poll()  # baseline
    return api


async def change(api, podero, **fields) -> None:
    api.bridge.clock.advance(timedelta(minutes=1))
    podero.update_wallbox(WB, **fields)
    await api.bridge.poll()
    await api.bridge.deliver()


async def test_a_rule_that_fired_is_explained_with_its_checks_delivery_and_attempts(
    make_api, api_config, podero, sink
):
    api = await started(make_api, api_config, podero)
    await change(api, podero, is_plugged_in=True, is_charging=True)
    await sink.wait_for(1)

    body = await api.get(f"/api/explain?rule=charging-started&resource={WB}")

    [ev] = body["evaluations"]
    assert ev["outcome"] == "sent"
    assert ev["trigger"] == "changed"
    assert {"field": "is_charging", "old": False, "new": True} in ev["changes"]
    assert [(c["name"], c["want"], c["got"], c["ok"]) for c in ev["checks"]] == [
        ("from", False, False, True),
        ("to", True, True, True),
    ]
    [delivery] = ev["deliveries"]
    assert delivery["channel"] == "partner"
    assert delivery["status"] == "delivered"
    assert [(a["number"], a["ok"], a["status_code"]) for a in delivery["attempt_log"]] == [(1, True, 204)]


async def test_a_rule_that_did_not_fire_says_which_condition_failed(make_api, api_config, podero, sink):
    api = await started(make_api, api_config, podero)
    await change(api, podero, is_plugged_in=True, is_charging=True)
    await change(api, podero, is_charging=False)

    body = await api.get(f"/api/explain?rule=charging-started&resource={WB}")

    newest = body["evaluations"][0]
    assert newest["outcome"] == "no-match"
    assert [(c["name"], c["ok"]) for c in newest["checks"]] == [("from", False), ("to", False)]
    assert "to: wanted true, got false" in newest["reasons"]
    assert newest["deliveries"] == []
    assert [e["outcome"] for e in body["evaluations"]] == ["no-match", "sent"]


async def test_a_silenced_notification_is_explained_by_its_silence(make_api, api_config, podero, sink):
    api = await started(make_api, api_config, podero)
    now = api.bridge.clock.now()
    await api.bridge.store.add_silence(
        Silence(
            id="sil_maintenance",
            rule="charging-started",
            starts_at=now,
            ends_at=now + timedelta(hours=1),
            comment="wallbox maintenance",
            created_at=now,
        )
    )
    await change(api, podero, is_plugged_in=True, is_charging=True)

    [ev] = (await api.get(f"/api/explain?rule=charging-started&resource={WB}"))["evaluations"]

    assert ev["outcome"] == "silenced"
    assert any("sil_maintenance (wallbox maintenance)" in r for r in ev["reasons"])
    assert [d["status"] for d in ev["deliveries"]] == ["suppressed"]


async def test_nothing_recorded_is_said_and_an_unknown_rule_is_a_404_with_a_hint(
    make_api, api_config, podero
):
    api = await started(make_api, api_config, podero)

    empty = await api.get(f"/api/explain?rule=charging-started&resource={WB}")
    assert empty["evaluations"] == []
    assert "no evaluation" in empty["note"]
    missing = await api.get("/api/explain?rule=charging-start&resource=x", status=404)
    assert "did you mean 'charging-started'?" in missing["detail"]


async def test_the_cli_prints_the_same_story(make_api, api_config, podero, sink, tmp_path, capsys):
    api = await started(make_api, api_config, podero)
    await change(api, podero, is_plugged_in=True, is_charging=True)
    await change(api, podero, is_charging=False)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "bridge.db"}"\n[rules]\npaths = ["rules/*.toml"]\n'
        '[channels.partner]\nkind = "webhook"\nurl = "https://hooks.example.com/x"\nsecret = "whsec_'
        'd2F0dGJyaWRnZS10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5"\n'
        '[channels.ops]\nkind = "email"\nto = ["ops@example.com"]\nfrom = "w@example.com"\n'
    )

    args = ["explain", "-c", str(config), "--rule", "charging-started", "--resource", WB]
    assert await asyncio.to_thread(main, args) == 0

    out = capsys.readouterr().out
    assert "NO-MATCH" in out
    assert "SENT" in out
    assert "FAIL     to: wanted true, got false" in out
    assert "to partner: delivered (1 attempt(s))" in out
    assert "#1 " in out
    assert "HTTP 204 ok" in out
    unknown = ["explain", "-c", str(config), "--rule", "nope", "--resource", WB]
    assert await asyncio.to_thread(main, unknown) == 1
