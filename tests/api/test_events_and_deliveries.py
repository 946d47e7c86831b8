"""Events and deliveries through the API: filters, keyset paging, attempts, and replay with the same
webhook-id at the real webhook sink."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import Api


async def _charging_events(api: Api, podero, n: int) -> list[str]:
    """`n` wallboxes start charging one minute apart: `n` events of rule charging-started."""
    user = podero.add_user(email="ada@example.com")
    boxes = [podero.add_wallbox(user, is_plugged_in=True, is_charging=False) for _ in range(n)]
    for wb in boxes:
        body = {"source": "podero.wallbox", "provider": "podero", "user_id": user, "wallbox_id": wb}
        await api.post("/api/watches", body, status=201)
    await api.bridge.poll()  # baseline
    for wb in boxes:
        podero.update_wallbox(wb, is_charging=True)
        api.bridge.clock.advance(timedelta(minutes=1))
        await api.bridge.poll()
    return boxes


async def test_events_are_listed_newest_first_and_filtered_by_rule_source_and_resource(api, podero):
    boxes = await _charging_events(api, podero, 3)
    podero.add_action(boxes[0], code="reauthenticate")
    api.bridge.clock.advance(timedelta(minutes=1))
    await api.bridge.poll()

    page = await api.get("/api/events")
    assert [e["rule"] for e in page["items"]] == ["wallbox-action-needed"] + ["charging-started"] * 3
    assert [e["resource_id"] for e in page["items"][1:]] == boxes[::-1]
    assert page["next_cursor"] is None
    first = page["items"][-1]
    assert first["source"] == "podero.wallbox"
    assert first["provider"] == "podero"
    assert {"field": "is_charging", "old": False, "new": True} in first["changes"]
    assert first["state"]["is_charging"] is True

    by_rule = await api.get("/api/events?rule=wallbox-action-needed")
    assert [e["resource_id"] for e in by_rule["items"]] == [boxes[0]]
    by_resource = await api.get(f"/api/events?resource_id={boxes[0]}")
    assert {e["rule"] for e in by_resource["items"]} == {"charging-started", "wallbox-action-needed"}
    assert (await api.get("/api/events?source=wattshift.onboarding"))["items"] == []
    assert len((await api.get("/api/events?provider=podero"))["items"]) == 4


async def test_events_are_filtered_by_time_since_inclusive_until_exclusive(api, podero):
    await _charging_events(api, podero, 3)
    times = sorted(e["occurred_at"] for e in (await api.get("/api/events"))["items"])
    since = await api.get("/api/events", params={"since": times[1]})
    assert sorted(e["occurred_at"] for e in since["items"]) == times[1:]
    until = await api.get("/api/events", params={"until": times[1]})
    assert [e["occurred_at"] for e in until["items"]] == times[:1]
    window = await api.get("/api/events", params={"since": times[1], "until": times[2]})
    assert [e["occurred_at"] for e in window["items"]] == [times[1]]


async def test_paging_with_the_cursor_visits_every_event_once_in_order(api, podero):
    await _charging_events(api, podero, 5)
    everything = [e["id"] for e in (await api.get("/api/events"))["items"]]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": "2"} | ({"cursor": cursor} if cursor else {})
        page = await api.get("/api/events", params=params)
        seen += [e["id"] for e in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything
    assert len(everything) == 5
    assert pages == 3


async def test_deliveries_are_listed_with_filters_and_paged(api, podero, sink):
    await _charging_events(api, podero, 3)
    await api.bridge.deliver()
    await sink.wait_for(3)
    delivered = await api.get("/api/deliveries?status=delivered&channel=partner")
    assert len(delivered["items"]) == 3
    assert all(d["attempts"] == 1 and d["last_error"] is None for d in delivered["items"])
    assert (await api.get("/api/deliveries?channel=ops"))["items"] == []
    first = await api.get("/api/deliveries?limit=2")
    rest = await api.get("/api/deliveries", params={"limit": "2", "cursor": first["next_cursor"]})
    assert rest["next_cursor"] is None
    ids = [d["id"] for d in first["items"] + rest["items"]]
    assert sorted(ids) == sorted(d["id"] for d in delivered["items"])
    event_id = delivered["items"][0]["event_id"]
    by_event = await api.get(f"/api/deliveries?event_id={event_id}")
    assert [d["event_id"] for d in by_event["items"]] == [event_id]


async def test_a_delivery_shows_its_event_body_and_every_attempt(make_api, api_config, podero, sink):
    api = await make_api(api_config(retry=["0s", "10s"]))
    sink.respond_with(503)
    await _charging_events(api, podero, 1)
    await api.bridge.deliver()
    api.bridge.clock.advance(timedelta(seconds=13))  # 10 s plus at most 20 % jitter
    await api.bridge.deliver()
    (item,) = (await api.get("/api/deliveries"))["items"]
    detail = await api.get(f"/api/deliveries/{item['id']}")
    assert detail["status"] == "delivered"
    assert [(a["number"], a["ok"], a["status_code"]) for a in detail["attempt_log"]] == [
        (1, False, 503),
        (2, True, 204),
    ]
    assert detail["event"]["rule"] == "charging-started"
    assert detail["event"]["id"] == detail["event_id"]
    assert '"type":"wallbox.charging_started"' in detail["body"].replace(" ", "")


async def test_an_unknown_delivery_is_a_404(api):
    _, body = await api.call("GET", "/api/deliveries/msg_nope", status=404)
    assert body == {"error": "no such delivery", "detail": "no delivery 'msg_nope'"}
    await api.call("POST", "/api/deliveries/msg_nope/replay", status=404)


async def test_replaying_a_dead_delivery_sends_it_again_with_the_same_webhook_id_and_body(
    make_api, api_config, podero, sink
):
    api = await make_api(api_config(retry=["0s"]))  # one failed attempt and it is dead
    sink.respond_with(500)
    await _charging_events(api, podero, 1)
    await api.bridge.deliver()
    (dead,) = (await api.get("/api/deliveries?status=dead"))["items"]
    assert "500" in dead["last_error"]

    _, replayed = await api.call("POST", f"/api/deliveries/{dead['id']}/replay", status=202)
    assert replayed["delivery"]["status"] == "pending"
    assert replayed["delivery"]["attempts"] == 0
    await api.bridge.deliver()
    await sink.wait_for(2)

    failed, resent = sink.received
    assert failed.status == 500
    assert resent.status == 204
    assert resent.verified
    assert resent.webhook_id == failed.webhook_id == dead["id"]
    assert resent.body == failed.body
    detail = await api.get(f"/api/deliveries/{dead['id']}")
    assert detail["status"] == "delivered"
    assert [a["ok"] for a in detail["attempt_log"]] == [False, True]


async def test_a_delivery_waiting_for_its_retry_cannot_be_replayed_a_delivered_one_can(
    make_api, api_config, podero, sink
):
    api = await make_api(api_config(retry=["0s", "10s"]))
    sink.respond_with(503)  # the first attempt fails: pending again, due in 10 s of clock time
    await _charging_events(api, podero, 1)
    await api.bridge.deliver()
    (pending,) = (await api.get("/api/deliveries?status=pending"))["items"]
    _, body = await api.call("POST", f"/api/deliveries/{pending['id']}/replay", status=409)
    assert body["error"] == "not replayable"
    assert "pending" in body["detail"]
    api.bridge.clock.advance(timedelta(seconds=13))  # 10 s plus at most 20 % jitter
    await api.bridge.deliver()
    await api.call("POST", f"/api/deliveries/{pending['id']}/replay", status=202)
    await api.bridge.deliver()
    await sink.wait_for(3)
    assert [(h.webhook_id, h.status) for h in sink.received] == [
        (pending["id"], 503),
        (pending["id"], 204),
        (pending["id"], 204),
    ]
