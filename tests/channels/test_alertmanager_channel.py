"""The Alertmanager channel, end to end through the outbox against a real Alertmanager.

The test starts Debian's `prometheus-alertmanager` (path in WATTBRIDGE_TEST_ALERTMANAGER, set by
`.ci/run`) on a free loopback port with a minimal config and its own storage, then reads the
alerts back from GET /api/v2/alerts: firing with our labels, then gone once the rule resolves
(Alertmanager's API lists only alerts that have not ended).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from bridge.clock import ManualClock

BINARY = os.environ.get("WATTBRIDGE_TEST_ALERTMANAGER")
NO_AM = (
    "WATTBRIDGE_TEST_ALERTMANAGER is unset or not a file (e.g. /usr/bin/prometheus-alertmanager, "
    "installed by .ci/run): Alertmanager tests skipped"
)
WB = "00000000-0000-4000-8000-0000000000e1"
MINIMAL_CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'

RULES = """
[[rule]]
id = "wallbox-charging"
description = "A wallbox is charging"
source = "podero.wallbox"
field = "is_charging"
to = true
resolve = true
severity = "warning"
type = "wallbox.charging"
channels = ["am"]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory) -> Iterator[str]:
    """A running Alertmanager of this module's own; yields its base URL."""
    if not BINARY or not Path(BINARY).is_file():
        pytest.skip(NO_AM)
    root = tmp_path_factory.mktemp("alertmanager")
    (root / "alertmanager.yml").write_text(MINIMAL_CONFIG)
    port = _free_port()
    log = (root / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={root / 'alertmanager.yml'}",
            f"--storage.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip port: a single, loopback-only instance
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30  # start-up, not a measurement: bounded so a hang fails
        while True:
            if process.poll() is not None:
                pytest.fail(f"alertmanager exited: {(root / 'alertmanager.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as answer:  # noqa: S310  # loopback http
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail("alertmanager did not become ready in 30 s")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def clock() -> ManualClock:
    # Alertmanager judges "ended" by its own wall clock: the bridge's time must be real-ish, and
    # in the past, so that a resolution (endsAt = when it resolved) has already happened for it.
    return ManualClock(datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30))


async def alerts_for(url: str, resource: str) -> list[dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{url}/api/v2/alerts", params={"filter": f'resource="{resource}"'}) as answer,
    ):
        assert answer.status == 200
        found: list[dict[str, Any]] = orjson.loads(await answer.read())
        return found


@pytest.fixture
async def bridge_for(make_config, make_bridge, podero, alertmanager):
    async def make(resource: str, **channel: Any):
        user = podero.add_user(email="ada@example.com")
        podero.add_wallbox(user, wallbox_id=resource, is_plugged_in=True, is_charging=False)
        am = {"kind": "alertmanager", "url": alertmanager, "labels": {"team": "ops"}, **channel}
        config = make_config(
            rules=RULES, wallboxes=[{"user_id": user, "wallbox_id": resource}], channels={"am": am}
        )
        bridge = await make_bridge(config)
        await bridge.poll()  # baseline
        return bridge

    return make


async def fire(bridge, podero, resource: str, charging: bool) -> None:
    podero.update_wallbox(resource, is_charging=charging)
    bridge.clock.advance(timedelta(seconds=60))
    await bridge.poll()
    await bridge.deliver()


async def test_a_firing_rule_is_an_active_alert_until_the_rule_resolves(bridge_for, podero, alertmanager):
    bridge = await bridge_for(WB)
    await fire(bridge, podero, WB, charging=True)

    [alert] = await alerts_for(alertmanager, WB)
    assert alert["status"]["state"] == "active"
    assert alert["labels"] == {
        "alertname": "wallbox-charging",
        "rule": "wallbox-charging",
        "type": "wallbox.charging",
        "source": "podero.wallbox",
        "provider": "podero",
        "resource": WB,
        "severity": "warning",
        "team": "ops",
    }
    assert alert["annotations"]["status"] == "firing"
    assert alert["annotations"]["summary"] == f"[warning] wallbox.charging: {WB}"
    assert alert["annotations"]["description"].startswith("A wallbox is charging")
    assert alert["generatorURL"] == "http://127.0.0.1:0/"  # the bridge's status page ([server] listen)
    starts = datetime.fromisoformat(alert["startsAt"].replace("Z", "+00:00"))
    ends = datetime.fromisoformat(alert["endsAt"].replace("Z", "+00:00"))
    assert starts == bridge.clock.now()
    assert ends - starts == timedelta(hours=24)  # the default resolve_timeout

    await fire(bridge, podero, WB, charging=False)  # the rule resolves: the alert ends

    assert await alerts_for(alertmanager, WB) == []
    deliveries = await bridge.store.list_deliveries(channel="am")
    assert sorted(d.status for d in deliveries) == ["delivered", "delivered"]
    bodies = [orjson.loads(d.body)[0] for d in deliveries]
    resolved = next(b for b in bodies if b["annotations"]["status"] == "resolved")
    assert resolved["startsAt"] == resolved["endsAt"]
    assert {b["labels"]["resource"] for b in bodies} == {WB}  # one fingerprint: resolution ends it


async def test_an_alert_alertmanager_rejects_is_a_dead_letter_at_once(bridge_for, podero, alertmanager):
    resource = "00000000-0000-4000-8000-0000000000e2"
    bridge = await bridge_for(resource, labels={"team-name": "ops"})  # not a valid label name
    await fire(bridge, podero, resource, charging=True)

    [delivery] = await bridge.store.list_deliveries(channel="am")
    assert delivery.status == "dead"
    [attempt] = await bridge.store.list_attempts(delivery.id)
    assert attempt.status_code == 400
    assert attempt.response_excerpt is not None
    assert "invalid label set" in attempt.response_excerpt
    assert await alerts_for(alertmanager, resource) == []


async def test_a_wrong_url_keeps_the_alert_pending_for_retries(bridge_for, podero, alertmanager):
    resource = "00000000-0000-4000-8000-0000000000e3"
    bridge = await bridge_for(resource, url=f"{alertmanager}/not-here")
    await fire(bridge, podero, resource, charging=True)

    [delivery] = await bridge.store.list_deliveries(channel="am")
    assert delivery.status == "pending"
    [attempt] = await bridge.store.list_attempts(delivery.id)
    assert attempt.status_code == 404
    assert attempt.error == "HTTP 404: check the channel's url and credentials"


async def test_an_unreachable_alertmanager_keeps_the_alert_pending(bridge_for, podero):
    resource = "00000000-0000-4000-8000-0000000000e4"
    bridge = await bridge_for(resource, url=f"http://127.0.0.1:{_free_port()}")
    await fire(bridge, podero, resource, charging=True)

    [delivery] = await bridge.store.list_deliveries(channel="am")
    assert delivery.status == "pending"
    [attempt] = await bridge.store.list_attempts(delivery.id)
    assert attempt.error is not None
    assert attempt.error.startswith("connection error")
