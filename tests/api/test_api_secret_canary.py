"""Secret canary: the admin token and provider secrets (unique strings) appear in no API response,
whether a success, an error, a provider failure or the OpenAPI document."""

from __future__ import annotations

from datetime import timedelta

from tests.api.conftest import ADMIN_TOKEN, CANARIES, Api


async def test_no_secret_appears_in_any_api_response_or_header(api: Api, podero, wattshift, sink):
    user = podero.add_user(email="ada@example.com")
    wb = podero.add_wallbox(user, is_plugged_in=True, is_charging=False)
    home = wattshift.add_home()
    await api.post(
        "/api/watches",
        {"source": "podero.wallbox", "provider": "podero", "user_id": user, "wallbox_id": wb},
        status=201,
    )
    await api.post(
        "/api/watches",
        {"source": "wattshift.onboarding", "provider": "wattshift", "home_id": home},
        status=201,
    )
    await api.bridge.poll_all()
    podero.update_wallbox(wb, is_charging=True)
    wattshift.fail("status", status=401, times=5)  # a provider refusing its credentials
    podero.revoke_tokens()
    api.bridge.clock.advance(timedelta(minutes=5))
    await api.bridge.poll_all()
    await api.bridge.deliver()
    silence = await api.post(
        "/api/silences", {"rule": "x", "duration": "1h", "comment": ADMIN_TOKEN}, status=201
    )

    for path in (
        "/api/events",
        "/api/deliveries",
        "/api/silences",
        "/api/rules",
        "/api/providers",
        "/api/watches",
    ):
        await api.get(path)
    for d in (await api.get("/api/deliveries"))["items"]:
        await api.get(f"/api/deliveries/{d['id']}")
    await api.get(f"/api/silences/{silence['id']}")
    await api.get("/api/openapi.json", auth=False)
    await api.call(
        "GET", "/api/events", auth=False, headers={"Authorization": f"Bearer {ADMIN_TOKEN}x"}, status=403
    )
    await api.call("GET", "/api/events", auth=False, status=401)
    await api.call("POST", "/api/silences", json={"rule": ADMIN_TOKEN, "comment": "c"}, status=422)
    await api.call("GET", f"/api/nothing/{ADMIN_TOKEN}", status=404)
    await api.post("/api/rules/reload")

    providers = {p["name"]: p for p in (await api.get("/api/providers"))["items"]}
    assert providers["wattshift"]["health"]["last_error"]  # the failure is reported ...
    assert len(api.bodies) >= 18
    leaks = [(secret, body[:200]) for body in api.bodies for secret in CANARIES if secret in body]
    assert leaks == []  # ... and no secret with it, even where a caller echoed one back
