"""Silences CRUD (validated like the CLI), the rule set and its reload, and provider health."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.app_keys import CONFIG
from tests.api.conftest import Api


async def _wallbox(api: Api, podero) -> str:
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user, is_plugged_in=True, is_charging=False)
    body = {"source": "podero.wallbox", "provider": "podero", "user_id": user, "wallbox_id": wb}
    await api.post("/api/watches", body, status=201)
    await api.bridge.poll()
    return wb


# -- silences --------------------------------------------------------------------------------------


async def test_a_silence_created_through_the_api_suppresses_matching_notifications(api, podero, sink):
    wb = await _wallbox(api, podero)
    silence = await api.post(
        "/api/silences",
        {"rule": "charging-started", "resource": "*", "duration": "2h", "comment": "maintenance"},
        status=201,
    )
    assert silence["active"] is True
    assert silence["id"].startswith("sil_")
    assert silence["created_by"] == "api"
    now = api.bridge.clock.now()
    assert silence["ends_at"] == (now + timedelta(hours=2)).isoformat().replace("+00:00", "Z")

    podero.update_wallbox(wb, is_charging=True)
    api.bridge.clock.advance(timedelta(minutes=1))
    await api.bridge.poll()
    await api.bridge.deliver()
    (delivery,) = (await api.get("/api/deliveries"))["items"]
    assert delivery["status"] == "suppressed"
    assert sink.received == []


async def test_silences_are_listed_read_and_expired(api):
    made = await api.post(
        "/api/silences",
        {"source": "podero.*", "ends_at": "2026-11-23T09:00:00Z", "comment": "night", "created_by": "ops"},
        status=201,
    )
    assert [s["id"] for s in (await api.get("/api/silences"))["items"]] == [made["id"]]
    assert await api.get(f"/api/silences/{made['id']}") == made

    expired = await api.delete(f"/api/silences/{made['id']}")
    assert expired["active"] is False
    assert expired["ends_at"] == api.bridge.clock.now().isoformat().replace("+00:00", "Z")
    assert (await api.get("/api/silences"))["items"] == []
    assert [s["id"] for s in (await api.get("/api/silences?include_expired=true"))["items"]] == [made["id"]]

    _, body = await api.call("DELETE", f"/api/silences/{made['id']}", status=409)
    assert body["error"] == "already ended"
    await api.call("DELETE", "/api/silences/sil_nope", status=404)
    await api.call("GET", "/api/silences/sil_nope", status=404)


async def test_a_future_silence_is_listed_but_not_active(api):
    made = await api.post(
        "/api/silences",
        {"rule": "x", "starts_at": "2026-11-23T08:00:00+01:00", "duration": "1h", "comment": "later"},
        status=201,
    )
    assert made["active"] is False
    assert made["starts_at"] == "2026-11-23T07:00:00Z"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(
            {"duration": "1h", "comment": "c"}, "at least one of rule, source or resource", id="no-matcher"
        ),
        pytest.param({"rule": "x", "comment": "c"}, "exactly one of an end time or a duration", id="no-end"),
        pytest.param(
            {"rule": "x", "duration": "1h", "ends_at": "2026-11-23T00:00:00Z", "comment": "c"},
            "exactly one",
            id="two-ends",
        ),
        pytest.param(
            {"source": "nest.*", "duration": "1h", "comment": "c"}, "matches no source", id="bad-source"
        ),
        pytest.param({"rule": "x", "duration": "400d", "comment": "c"}, "366 days", id="too-long"),
        pytest.param({"rule": "x", "duration": "1h", "comment": "   "}, "say why", id="blank-comment"),
        pytest.param(
            {"rule": "x", "ends_at": "2026-11-20T00:00:00Z", "comment": "c"},
            "before it starts",
            id="ends-in-past",
        ),
    ],
)
async def test_an_invalid_silence_is_a_422_saying_what_to_fix(api, body, says):
    _, answer = await api.call("POST", "/api/silences", json=body, status=422)
    assert answer["error"] == "invalid silence"
    assert says in answer["detail"]


async def test_a_silence_time_without_a_timezone_is_refused_by_the_model(api):
    _, answer = await api.call(
        "POST",
        "/api/silences",
        json={"rule": "x", "ends_at": "2026-11-23T00:00:00", "comment": "c"},
        status=422,
    )
    assert answer["detail"][0]["loc"] == ["ends_at"]
    assert answer["detail"][0]["type"] == "timezone_aware"


@pytest.mark.parametrize(
    "starts_at",
    [
        pytest.param("0999-01-01T00:00:00Z", id="year-999-would-not-sort-as-text-in-the-store"),
        pytest.param("9999-12-31T00:00:00Z", id="year-9999"),
    ],
)
async def test_a_silence_far_in_the_past_or_future_is_a_422_and_never_stored(api, starts_at):
    body = {"rule": "x", "starts_at": starts_at, "duration": "1h", "comment": "c"}
    _, answer = await api.call("POST", "/api/silences", json=body, status=422)
    assert "year must be between 1970 and 9998" in answer["detail"][0]["msg"]
    assert await api.bridge.store.list_silences() == []


async def test_a_silence_ending_past_year_9999_is_a_422_not_a_crash(api):
    body = {"rule": "x", "starts_at": "9998-12-31T12:00:00Z", "duration": "366d", "comment": "c"}
    _, answer = await api.call("POST", "/api/silences", json=body, status=422)
    assert "9999" in answer["detail"]


# -- rules -----------------------------------------------------------------------------------------


async def test_rules_are_listed_with_their_file_line_and_last_firing(api, podero):
    before = {r["id"]: r for r in (await api.get("/api/rules"))["items"]}
    assert before["charging-started"]["last_fired_at"] is None
    assert before["charging-started"]["line"] == 2
    assert before["charging-started"]["file"].endswith("main.toml")
    assert before["wallbox-action-needed"]["channels"] == ["partner", "ops"]
    wb = await _wallbox(api, podero)
    podero.update_wallbox(wb, is_charging=True)
    api.bridge.clock.advance(timedelta(minutes=1))
    await api.bridge.poll()
    after = {r["id"]: r for r in (await api.get("/api/rules"))["items"]}
    assert after["charging-started"]["last_fired_at"] == api.bridge.clock.now().isoformat().replace(
        "+00:00", "Z"
    )
    assert after["wallbox-action-needed"]["last_fired_at"] is None


def _rules_dir(api: Api) -> Path:
    return Path(api.bridge.app[CONFIG].base_dir) / "rules"


NEW_RULE = """
[[rule]]
id = "wallbox-deleted"
source = "podero.wallbox"
field = "deleted_at"
changed = true
channels = ["ops"]
"""

BAD_RULE = """
[[rule]]
id = "broken"
source = "podero.wallbox"
field = "is_charging"
to = true
channels = ["nowhere"]
"""


async def test_a_reload_picks_up_a_new_rule_file(api):
    (_rules_dir(api) / "extra.toml").write_text(textwrap.dedent(NEW_RULE))
    result = await api.post("/api/rules/reload")
    assert result == {"rules": 5, "added": ["wallbox-deleted"], "removed": []}
    listed = await api.get("/api/rules")
    assert "wallbox-deleted" in {r["id"] for r in listed["items"]}
    assert listed["reloads_ok"] == 1


async def test_a_reload_with_a_bad_rule_file_returns_its_file_line_errors_and_keeps_the_old_rules(
    api, podero, sink
):
    before = await api.get("/api/rules")
    (_rules_dir(api) / "bad.toml").write_text(textwrap.dedent(BAD_RULE))
    _, answer = await api.call("POST", "/api/rules/reload", status=422)
    assert answer["error"] == "invalid rules; the last good rules are kept"
    assert answer["detail"]["kept"] == 4
    (problem,) = answer["detail"]["problems"]
    assert "bad.toml:7: rule[0].channels" in problem
    assert "nowhere" in problem
    after = await api.get("/api/rules")
    assert after["items"] == before["items"]
    assert after["reloads_failed"] == 1

    wb = await _wallbox(api, podero)  # the kept rules still fire
    podero.update_wallbox(wb, is_charging=True)
    api.bridge.clock.advance(timedelta(minutes=1))
    await api.bridge.poll()
    await api.bridge.deliver()
    await sink.wait_for(1)
    assert sink.received[0].json["data"]["rule"] == "charging-started"


# -- providers -------------------------------------------------------------------------------------


async def test_providers_show_health_last_poll_watches_and_resource_counts(api, podero):
    await _wallbox(api, podero)
    by_name = {p["name"]: p for p in (await api.get("/api/providers"))["items"]}
    pod = by_name["podero"]
    assert pod["kind"] == "podero"
    assert pod["enabled"] is True
    assert pod["active_watches"] == 1
    assert pod["resources"] == {"podero.wallbox": 1}
    now = api.bridge.clock.now().isoformat().replace("+00:00", "Z")
    assert pod["health"] == {
        "status": "ok",
        "consecutive_failures": 0,
        "last_error": None,
        "last_success_at": now,
        "last_poll_at": now,
        "deferred_until": None,
        "deferred_cause": None,
        "deferred": None,
        "retry_after_capped": False,
        "resources_backing_off": 0,
        "backing_off": [],
    }
    assert by_name["wattshift"]["health"]["last_poll_at"] is None
    assert by_name["spare"]["enabled"] is False
    assert by_name["spare"]["health"] is None


async def test_a_provider_that_keeps_failing_shows_as_down_with_its_last_error(api, podero):
    await _wallbox(api, podero)
    podero.fail("wallbox", status=503, times=3)
    for _ in range(3):
        api.bridge.clock.advance(timedelta(minutes=1))
        await api.bridge.poll()
    (pod,) = [p for p in (await api.get("/api/providers"))["items"] if p["name"] == "podero"]
    assert pod["health"]["status"] == "down"
    assert pod["health"]["consecutive_failures"] == 3
    assert "503" in pod["health"]["last_error"]
