"""The status page in a real browser: Debian's headless Chromium, driven by Playwright, against a real
bridge on 127.0.0.1. Sign in, see the dead delivery, press Replay, see it delivered; a screenshot of
the page is kept in test-artifacts/ for people to look at."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.web.conftest import ADMIN_TOKEN, DeadLetter

CHROMIUM = Path("/usr/bin/chromium")
# Loopback only: no background networking, no component updates, nothing downloaded.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # root in CI; the page is our own, on loopback
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None,
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run does)",
)


async def test_an_operator_signs_in_replays_a_dead_delivery_and_sees_it_delivered(
    dead_letter: DeadLetter, sink, repo_root: Path
):
    async_api = pytest.importorskip("playwright.async_api", reason="needs the playwright package (dev extra)")
    bridge, dead = dead_letter.bridge, dead_letter.delivery
    base = str(bridge.client.make_url("/")).rstrip("/")
    async with async_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(10_000)

            await page.goto(base + "/")
            assert page.url == base + "/login"  # not signed in: sent to the form
            await page.fill("#token", "not-the-token")
            await page.click("button[type=submit]")
            refused = page.get_by_role("alert")
            await async_api.expect(refused).to_have_text("That token is not the admin token.")

            await page.fill("#token", ADMIN_TOKEN)
            await page.click("button[type=submit]")
            assert page.url == base + "/"
            row = page.locator(f"#delivery-{dead.id}")
            await async_api.expect(row).to_have_attribute("data-status", "dead")
            await async_api.expect(row).to_contain_text("HTTP 500")
            await async_api.expect(page.locator("#provider-podero")).to_contain_text("ok")
            artifacts = repo_root / "test-artifacts"
            artifacts.mkdir(exist_ok=True)
            await page.screenshot(path=str(artifacts / "status_page_dead.png"), full_page=True)

            sink.clear_script()  # the partner fixed their receiver: it answers 204 again
            await page.get_by_role("button", name=f"Replay {dead.id}").click()
            await async_api.expect(page.get_by_role("status")).to_contain_text(f"{dead.id} is pending again")

            await bridge.deliver()  # drive the worker (the replay also woke the running one)
            await sink.wait_for(2)
            await page.goto(base + "/")
            await async_api.expect(page.locator(f"#delivered #delivery-{dead.id}")).to_have_attribute(
                "data-status", "delivered"
            )
            await async_api.expect(page.locator("#dead")).to_contain_text("None.")

            await page.screenshot(path=str(artifacts / "status_page.png"), full_page=True)
            assert (artifacts / "status_page.png").stat().st_size > 10_000
        finally:
            await browser.close()

    assert [h.webhook_id for h in sink.verified] == [dead.id, dead.id]
    assert [h.status for h in sink.verified] == [500, 204]
