"""The status page over real HTTP: login, logout, redirects, CSRF, and replaying a dead delivery that
the worker then sends to the verifying sink with the same webhook-id."""

from __future__ import annotations

import re
from datetime import timedelta

from aiohttp.test_utils import TestClient

from bridge.web.session import SESSION_TTL
from bridge.web.status import COOKIE
from tests.web.conftest import ADMIN_TOKEN, CSRF, DeadLetter


async def sign_in(client: TestClient) -> str:
    """Sign in through the form; returns the page's CSRF token."""
    resp = await client.post("/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"
    return await csrf_of(client)


async def csrf_of(client: TestClient) -> str:
    page = await client.get("/", allow_redirects=False)
    assert page.status == 200
    match = CSRF.search(await page.text())
    assert match is not None
    return match.group(1)


async def test_without_an_admin_token_the_page_says_it_is_disabled_and_never_opens(make_config, make_bridge):
    bridge = await make_bridge(make_config())
    for method, path in [("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("POST", "/replay")]:
        resp = await bridge.client.request(method, path, data={"token": ""}, allow_redirects=False)
        assert resp.status == 503, path
        assert "The status page is disabled" in await resp.text()
        assert COOKIE not in resp.cookies


async def test_an_unauthenticated_visit_is_redirected_to_the_login_form(dead_letter: DeadLetter):
    client = dead_letter.bridge.client
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login"
    form = await client.get("/login")
    assert form.status == 200
    html = await form.text()
    assert '<form method="post" action="/login">' in html
    assert dead_letter.delivery.id not in html


async def test_a_wrong_token_is_refused_and_sets_no_cookie(dead_letter: DeadLetter):
    client = dead_letter.bridge.client
    resp = await client.post("/login", data={"token": ADMIN_TOKEN + "x"}, allow_redirects=False)
    assert resp.status == 401
    assert "That token is not the admin token." in await resp.text()
    assert COOKIE not in resp.cookies
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_signing_in_sets_an_httponly_strict_session_cookie_that_is_not_the_token(
    dead_letter: DeadLetter,
):
    client = dead_letter.bridge.client
    resp = await client.post("/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    cookie = resp.cookies[COOKIE]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert ADMIN_TOKEN not in cookie.value
    assert ADMIN_TOKEN not in resp.headers["Set-Cookie"]

    page = await client.get("/", allow_redirects=False)
    assert page.status == 200
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    html = await page.text()
    assert ADMIN_TOKEN not in html
    assert f'id="delivery-{dead_letter.delivery.id}" data-status="dead"' in html
    assert '<tr id="provider-podero">' in html
    assert "charging-started" in html
    # Signed in already: the login form sends you to the page.
    again = await client.get("/login", allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (303, "/")


async def test_signing_out_revokes_the_session_even_for_a_copied_cookie(dead_letter: DeadLetter):
    client = dead_letter.bridge.client
    csrf = await sign_in(client)
    copied = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value

    resp = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    assert (await client.get("/", allow_redirects=False)).status == 303

    replayed_cookie = await client.get("/", headers={"Cookie": f"{COOKIE}={copied}"}, allow_redirects=False)
    assert replayed_cookie.status == 303


async def test_a_session_ends_after_its_lifetime_on_the_bridge_clock(dead_letter: DeadLetter):
    client = dead_letter.bridge.client
    await sign_in(client)
    dead_letter.bridge.clock.advance(SESSION_TTL - timedelta(minutes=1))
    assert (await client.get("/", allow_redirects=False)).status == 200
    dead_letter.bridge.clock.advance(timedelta(minutes=2))
    assert (await client.get("/", allow_redirects=False)).status == 303


async def test_a_forged_or_tampered_cookie_is_not_a_session(dead_letter: DeadLetter):
    client = dead_letter.bridge.client
    await sign_in(client)
    value = client.session.cookie_jar.filter_cookies(client.make_url("/"))[COOKIE].value
    issued, nonce, mac = value.split(".")
    client.session.cookie_jar.clear()
    for forged in [ADMIN_TOKEN, f"{issued}.{nonce}.{'0' * 64}", f"{int(issued) + 1}.{nonce}.{mac}", "x"]:
        resp = await client.get("/", headers={"Cookie": f"{COOKIE}={forged}"}, allow_redirects=False)
        assert resp.status == 303, forged


async def test_a_replay_without_the_sessions_csrf_token_is_refused_and_changes_nothing(
    dead_letter: DeadLetter,
):
    client, store, dead = dead_letter.bridge.client, dead_letter.bridge.store, dead_letter.delivery
    csrf = await sign_in(client)
    for token in [None, "", "0" * 64, csrf[:-1] + ("0" if csrf[-1] != "0" else "1")]:
        data = {"delivery_id": dead.id} | ({} if token is None else {"csrf": token})
        resp = await client.post("/replay", data=data, allow_redirects=False)
        assert resp.status == 403
        assert "CSRF token" in await resp.text()
    after = await store.get_delivery(dead.id)
    assert after is not None
    assert after.status == "dead"

    # Not signed in at all: off to the login form, still nothing replayed.
    client.session.cookie_jar.clear()
    resp = await client.post("/replay", data={"delivery_id": dead.id, "csrf": csrf}, allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (303, "/login")
    after = await store.get_delivery(dead.id)
    assert after is not None
    assert after.status == "dead"


async def test_replay_makes_the_dead_delivery_pending_and_the_worker_sends_it_with_the_same_id(
    dead_letter: DeadLetter, sink
):
    bridge, dead = dead_letter.bridge, dead_letter.delivery
    csrf = await sign_in(bridge.client)
    resp = await bridge.client.post(
        "/replay", data={"delivery_id": dead.id, "csrf": csrf}, allow_redirects=False
    )
    assert (resp.status, resp.headers["Location"]) == (303, f"/?notice=replayed&id={dead.id}")
    page = await bridge.client.get(resp.headers["Location"])
    assert f"Delivery <code>{dead.id}</code> is pending again" in await page.text()

    await sink.wait_for(2)  # the replay woke the running worker
    await bridge.deliver()
    assert [h.webhook_id for h in sink.verified] == [dead.id, dead.id]
    assert [h.status for h in sink.verified] == [500, 204]
    assert sink.verified[0].body == sink.verified[1].body
    delivered = await bridge.store.get_delivery(dead.id)
    assert delivered is not None
    assert delivered.status == "delivered"
    html = await (await bridge.client.get("/")).text()
    assert f'id="delivery-{dead.id}" data-status="delivered"' in html

    # Replaying what is already pending again is refused and said so.
    await bridge.store.replay([dead.id], bridge.clock.now())
    again = await bridge.client.post("/replay", data={"delivery_id": dead.id, "csrf": csrf})
    assert "was not replayed" in await again.text()


async def test_rules_show_their_last_firing_and_stored_text_is_escaped(
    make_config, make_bridge, podero, wallbox
):
    rules = """
    [[rule]]
    id = "charging-started"
    description = "<script>alert('x')</script> starts"
    source = "podero.wallbox"
    field = "is_charging"
    to = true
    channels = ["partner"]

    [[rule]]
    id = "never-fires"
    source = "podero.wallbox"
    field = "is_plugged_in"
    to = false
    channels = ["partner"]
    """
    config = make_config(
        rules=rules, wallboxes=[wallbox], server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN}
    )
    bridge = await make_bridge(config)
    await bridge.poll()
    bridge.clock.advance(timedelta(minutes=5))
    podero.update_wallbox(wallbox["wallbox_id"], is_charging=True)
    await bridge.poll()
    bridge.clock.advance(timedelta(minutes=3))
    await sign_in(bridge.client)
    html = await (await bridge.client.get("/")).text()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; starts" in html
    charging = html.split('<tr id="rule-charging-started">')[1].split("</tr>")[0]
    assert "3m ago" in charging
    never = html.split('<tr id="rule-never-fires">')[1].split("</tr>")[0]
    assert "never" in never


async def test_a_rule_that_fired_long_ago_shows_its_last_firing_behind_hundreds_of_newer_events(
    make_config, make_bridge, podero
):
    rules = """
    [[rule]]
    id = "unplugged"
    source = "podero.wallbox"
    field = "is_plugged_in"
    to = false
    channels = ["partner"]

    [[rule]]
    id = "charging-started"
    source = "podero.wallbox"
    field = "is_charging"
    to = true
    channels = ["partner"]
    """
    user = podero.add_user(email="grace@example.com")
    old = podero.add_wallbox(user, is_plugged_in=True)
    busy = [podero.add_wallbox(user, is_charging=False) for _ in range(510)]
    config = make_config(rules=rules, server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN})
    providers = dict(config.providers)
    providers["podero"] = providers["podero"].model_copy(update={"discover": True})  # one listing a poll
    bridge = await make_bridge(config.model_copy(update={"providers": providers}))
    await bridge.poll()  # baseline
    podero.update_wallbox(old, is_plugged_in=False)
    bridge.clock.advance(timedelta(hours=2))
    assert (await bridge.poll()).events == 1
    bridge.clock.advance(timedelta(hours=1))
    for wallbox_id in busy:
        podero.update_wallbox(wallbox_id, is_charging=True)
    assert (await bridge.poll()).events == 510  # more events than any "latest N" window
    bridge.clock.advance(timedelta(minutes=5))
    await sign_in(bridge.client)

    html = await (await bridge.client.get("/")).text()

    unplugged = html.split('<tr id="rule-unplugged">')[1].split("</tr>")[0]
    assert "1h 5m ago" in unplugged
    charging = html.split('<tr id="rule-charging-started">')[1].split("</tr>")[0]
    assert "5m ago" in charging


def css_rule(html: str, selector: str) -> str:
    """The declarations of one rule of the page's own stylesheet (the CSP allows no other)."""
    style = html.split("<style>")[1].split("</style>")[0]
    return re.search(rf"^\s*{re.escape(selector)} {{([^}}]*)}}", style, re.MULTILINE).group(1)


async def test_a_firing_event_badge_is_coloured_by_its_severity_red_only_when_critical(
    make_config, make_bridge, podero, wallbox
):
    rules = "".join(
        f"""
    [[rule]]
    id = "charging-{severity}"
    source = "podero.wallbox"
    field = "is_charging"
    to = true
    severity = "{severity}"
    channels = ["partner"]
    """
        for severity in ("info", "warning", "critical")
    )
    config = make_config(
        rules=rules, wallboxes=[wallbox], server={"listen": "127.0.0.1:0", "admin_token": ADMIN_TOKEN}
    )
    bridge = await make_bridge(config)
    await bridge.poll()
    podero.update_wallbox(wallbox["wallbox_id"], is_charging=True)
    assert (await bridge.poll()).events == 3
    await sign_in(bridge.client)

    html = await (await bridge.client.get("/")).text()

    events = html.split('<section id="events">')[1].split("</section>")[0]
    badges = dict(re.findall(r'<td>charging-(\w+)</td>\s*<td><span class="badge ([\w -]+)">firing<', events))
    assert badges == {
        "info": "firing sev-info",
        "warning": "firing sev-warning",
        "critical": "firing sev-critical",
    }
    assert "var(--bad)" in css_rule(html, ".down, .dead, .firing, .disabled")  # critical: red
    assert "var(--warn)" in css_rule(html, ".firing.sev-warning")  # amber
    assert "var(--info)" in css_rule(html, ".firing.sev-info")  # neutral blue
    assert "default-src 'none'" in (await bridge.client.get("/")).headers["Content-Security-Policy"]


async def test_the_cookie_is_secure_behind_a_proxy_that_says_https(dead_letter: DeadLetter):
    client = dead_letter.bridge.client
    plain = await client.post("/login", data={"token": ADMIN_TOKEN}, allow_redirects=False)
    assert not plain.cookies[COOKIE]["secure"]
    proxied = await client.post(
        "/login", data={"token": ADMIN_TOKEN}, headers={"X-Forwarded-Proto": "https"}, allow_redirects=False
    )
    assert proxied.cookies[COOKIE]["secure"] is True
