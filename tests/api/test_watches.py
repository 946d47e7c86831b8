"""Watches registered at run time: validated, persisted, polled from the next cycle against the real
simulators, and ended by themselves at a terminal state."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from bridge.model import ResourceKey
from tests.api.conftest import Api


def _requests_for(sim, resource_id: str) -> int:
    return sum(1 for _, path in sim.requests if resource_id in path)


async def test_a_podero_onboarding_session_is_polled_from_the_next_cycle_and_ends_when_finished(
    api: Api, podero, sink
):
    user = podero.add_user(email="ada@example.com")
    session = podero.add_onboarding_session(user)
    watch = await api.post(
        "/api/watches",
        {"source": "podero.onboarding_session", "provider": "podero", "session_id": session},
        status=201,
    )
    assert watch["active"] is True
    assert watch["resource_id"] == session
    assert watch["id"].startswith("wat_")

    await api.bridge.poll("onboarding")  # the next cycle: baseline, status pending
    snap = await api.bridge.store.get_snapshot(
        ResourceKey(source="podero.onboarding_session", provider="podero", resource_id=session)
    )
    assert snap is not None
    assert snap.state is not None
    assert snap.state["status"] == "pending"

    device = podero.finish_onboarding(session)
    api.bridge.clock.advance(timedelta(minutes=1))
    await api.bridge.poll("onboarding")
    await api.bridge.deliver()
    await sink.wait_for(1)
    assert sink.received[0].json["data"]["rule"] == "podero-onboarding-finished"

    ended = await api.get(f"/api/watches/{watch['id']}")
    assert ended["active"] is False
    assert ended["end_reason"] == "finished"
    assert ended["ended_at"] == api.bridge.clock.now().isoformat().replace("+00:00", "Z")
    polled = _requests_for(podero, session)
    api.bridge.clock.advance(timedelta(minutes=1))
    await api.bridge.poll("onboarding")
    assert _requests_for(podero, session) == polled  # an ended watch is not polled any more
    assert [w["id"] for w in (await api.get("/api/watches?state=ended"))["items"]] == [watch["id"]]
    # What stays active is the wallbox the session created (its skip_to is `wb`).
    active = (await api.get("/api/watches?state=active"))["items"]
    assert [(w["source"], w["resource_id"]) for w in active] == [("podero.wallbox", device)]


async def test_a_wattshift_home_is_polled_and_its_watch_ends_when_onboarding_completes(
    api: Api, wattshift, sink
):
    home = wattshift.add_home()
    watch = await api.post(
        "/api/watches",
        {"source": "wattshift.onboarding", "provider": "wattshift", "home_id": home},
        status=201,
    )
    await api.bridge.poll("homes", provider="wattshift")
    assert _requests_for(wattshift, "status") == 1
    wattshift.start(home)
    wattshift.complete(home)
    api.bridge.clock.advance(timedelta(minutes=2))
    await api.bridge.poll("homes", provider="wattshift")
    await api.bridge.deliver()
    await sink.wait_for(1)
    assert sink.received[0].json["data"]["resource_id"] == home
    ended = await api.get(f"/api/watches/{watch['id']}")
    assert (ended["active"], ended["end_reason"]) == (False, "completed")


async def test_a_podero_wallbox_watch_is_polled_with_its_user_and_lasts_until_deleted(api: Api, podero):
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user, is_plugged_in=True)
    watch = await api.post(
        "/api/watches",
        {"source": "podero.wallbox", "provider": "podero", "user_id": user, "wallbox_id": wb.upper()},
        status=201,
    )
    assert watch["resource_id"] == wb  # ids are normalised, so one wallbox is one watch
    assert watch["params"] == {"user_id": user}
    await api.bridge.poll()
    assert _requests_for(podero, wb) == 1

    deleted = await api.delete(f"/api/watches/{watch['id']}")
    assert deleted["id"] == watch["id"]
    await api.call("GET", f"/api/watches/{watch['id']}", status=404)
    await api.call("DELETE", f"/api/watches/{watch['id']}", status=404)
    api.bridge.clock.advance(timedelta(minutes=1))
    await api.bridge.poll()
    assert _requests_for(podero, wb) == 1  # deleted: not polled again


async def test_a_registered_watch_is_stored_and_registering_again_reopens_it(api: Api, podero):
    session = str(uuid.uuid4())
    body = {"source": "podero.onboarding_session", "provider": "podero", "session_id": session}
    first = await api.post("/api/watches", body, status=201)
    key = ResourceKey(source="podero.onboarding_session", provider="podero", resource_id=session)
    await api.bridge.store.end_watch(key, reason="expired", at=api.bridge.clock.now())
    assert (await api.get(f"/api/watches/{first['id']}"))["active"] is False
    again = await api.post("/api/watches", body, status=201)
    assert again["id"] == first["id"]
    assert again["active"] is True
    (stored,) = await api.bridge.store.list_watches(provider="podero")
    assert stored.key == key


async def test_watches_are_listed_with_filters(api: Api, podero, wattshift):
    await api.post(
        "/api/watches",
        {"source": "podero.onboarding_session", "provider": "podero", "session_id": str(uuid.uuid4())},
        status=201,
    )
    await api.post(
        "/api/watches",
        {"source": "wattshift.onboarding", "provider": "wattshift", "home_id": "ws_home_1"},
        status=201,
    )
    assert len((await api.get("/api/watches"))["items"]) == 2
    assert [w["provider"] for w in (await api.get("/api/watches?provider=wattshift"))["items"]] == [
        "wattshift"
    ]
    only = await api.get("/api/watches?source=podero.onboarding_session")
    assert [w["source"] for w in only["items"]] == ["podero.onboarding_session"]


@pytest.mark.parametrize(
    ("body", "error", "says"),
    [
        pytest.param(
            {"source": "podero.onboarding_session", "provider": "nope", "session_id": str(uuid.uuid4())},
            "unknown provider",
            "configured: podero, spare, wattshift",
            id="unknown-provider",
        ),
        pytest.param(
            {"source": "podero.onboarding_session", "provider": "wattshift", "session_id": str(uuid.uuid4())},
            "wrong provider kind",
            "need a podero provider",
            id="wrong-kind",
        ),
        pytest.param(
            {"source": "wattshift.onboarding", "provider": "spare", "home_id": "ws_home_1"},
            "provider disabled",
            "enabled = false",
            id="disabled-provider",
        ),
    ],
)
async def test_a_watch_on_a_provider_that_cannot_poll_it_is_a_422(api: Api, body, error, says):
    _, answer = await api.call("POST", "/api/watches", json=body, status=422)
    assert answer["error"] == error
    assert says in answer["detail"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        pytest.param(
            {"source": "podero.onboarding_session", "provider": "podero", "session_id": "not-a-uuid"},
            ["podero.onboarding_session", "session_id"],
            id="session-id-not-a-uuid",
        ),
        pytest.param(
            {"source": "podero.wallbox", "provider": "podero", "wallbox_id": str(uuid.uuid4())},
            ["podero.wallbox", "user_id"],
            id="wallbox-without-user",
        ),
        pytest.param(
            {"source": "wattshift.onboarding", "provider": "wattshift", "home_id": "../../etc"},
            ["wattshift.onboarding", "home_id"],
            id="home-id-with-slashes",
        ),
        pytest.param(
            {"source": "bridge.provider", "provider": "realto", "id": "x"},
            [],
            id="source-that-cannot-be-watched",
        ),
        pytest.param(
            {"source": "realto.command", "provider": "realto", "command_id": str(uuid.uuid4())},
            ["realto.command", "entity_id"],
            id="command-without-entity",
        ),
    ],
)
async def test_a_malformed_watch_is_a_422_naming_the_field(api: Api, body, loc):
    _, answer = await api.call("POST", "/api/watches", json=body, status=422)
    assert answer["error"] == "invalid request body"
    assert answer["detail"][0]["loc"] == loc
    assert await api.bridge.store.list_watches(active_only=False) == []
