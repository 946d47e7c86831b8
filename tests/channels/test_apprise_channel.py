"""The Apprise channel, end to end through the outbox to a real loopback receiver (Apprise's json://).

The URL's password is the canary: it must reach the receiver (as HTTP Basic) and nowhere else —
not the logs, the stored attempts, the admin API's answers or a config error.
"""

from __future__ import annotations

import base64
import secrets
import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from bridge import errors
from bridge.channels.apprise import AppriseChannel, redacted_url, secret_parts
from bridge.channels.base import RenderContext
from bridge.clock import ManualClock
from bridge.config.loader import load_config
from bridge.config.models import AppriseChannelConfig
from bridge.model import Delivery, Event, ResourceKey

WB = "00000000-0000-4000-8000-0000000000d1"
SECRET = f"apprise-canary-{secrets.token_hex(8)}"
ADMIN = "admin-token-for-the-apprise-tests"

RULES = """
[[rule]]
id = "wallbox-action-needed"
source = "podero.wallbox"
field = "action_needed"
to = true
severity = "warning"
channels = ["chat"]

[rule.email]
subject = "Wallbox of {{ new.owner.email }} needs action"
body = "Actions: {% for a in new.actions %}{{ a.code }} {% endfor %}"
"""


@dataclass
class Receiver:
    """Stands in for a chat service: Apprise's json:// POSTs here; the test scripts the answer."""

    status: int = 200
    received: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    base: str = ""

    async def notify(self, request: web.Request) -> web.Response:
        self.received.append((dict(request.headers), await request.json()))
        # A careless service quoting the credentials back: that must not end up anywhere either.
        return web.Response(status=self.status, text=f"rejected {request.headers.get('Authorization')}")

    def url(self, password: str = SECRET) -> str:
        return f"json://bot:{password}@{self.base}/notify"


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/notify", rec.notify)
    server = await aiohttp_server(app)
    rec.base = f"127.0.0.1:{server.port}"
    return rec


@pytest.fixture
async def bridge_for(make_config, make_bridge, podero, receiver):
    user = podero.add_user(email="ada@example.com")
    podero.add_wallbox(user, wallbox_id=WB, is_plugged_in=True)

    async def make(**channel: Any):
        config = make_config(
            rules=RULES,
            wallboxes=[{"user_id": user, "wallbox_id": WB}],
            channels={"chat": {"kind": "apprise", "url": receiver.url(), **channel}},
            server={"listen": "127.0.0.1:0", "admin_token": ADMIN},
        )
        bridge = await make_bridge(config)
        await bridge.poll()  # baseline
        podero.add_action(WB, code="reauthenticate")
        bridge.clock.advance(timedelta(seconds=60))
        await bridge.poll()
        await bridge.deliver()
        [delivery] = await bridge.store.list_deliveries(channel="chat")
        return bridge, delivery

    return make


async def test_a_firing_rule_reaches_the_service_with_the_rules_title_and_body(bridge_for, receiver):
    _, delivery = await bridge_for()

    assert delivery.status == "delivered"
    [(headers, body)] = receiver.received
    assert body["title"] == "Wallbox of ada@example.com needs action"
    assert body["message"].strip() == "Actions: reauthenticate"
    assert body["type"] == "warning"  # the rule's severity, as Apprise's notification type
    assert headers["Authorization"] == "Basic " + base64.b64encode(f"bot:{SECRET}".encode()).decode()


async def test_a_failing_service_is_retried_and_its_secret_appears_nowhere(bridge_for, receiver, json_logs):
    receiver.status = 500
    bridge, delivery = await bridge_for()

    assert len(receiver.received) == 1
    assert delivery.status == "pending"  # retried on the schedule
    assert delivery.attempts == 1
    [attempt] = await bridge.store.list_attempts(delivery.id)
    assert not attempt.ok
    assert attempt.error is not None
    assert attempt.error.startswith("apprise: failure sending to json://bot:****@127.0.0.1:")
    assert attempt.response_excerpt is not None
    assert "error=500" in attempt.response_excerpt
    answer = await bridge.client.get(
        f"/api/deliveries/{delivery.id}", headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert answer.status == 200
    api_text = await answer.text()
    assert "json://bot:****@" in api_text
    logs = json_logs.getvalue()
    assert "delivery.attempt" in logs
    for where, text in {
        "logs": logs,
        "api": api_text,
        "attempt": f"{attempt.error} {attempt.response_excerpt}",
    }.items():
        assert SECRET not in text, where


async def test_the_schedules_end_makes_a_dead_letter(bridge_for, receiver):
    receiver.status = 503
    bridge, delivery = await bridge_for(retry=["0s", "5s"])
    assert delivery.status == "pending"
    bridge.clock.advance(timedelta(seconds=10))
    await bridge.deliver()

    assert len(receiver.received) == 2
    dead = await bridge.store.get_delivery(delivery.id)
    assert dead is not None
    assert dead.status == "dead"


def test_the_private_parts_of_a_service_url_are_secrets_and_never_shown():
    url = "tgram://123456789:ABCdefGhIJKlmnoPQRsTUVwxyZ/987654"
    assert "123456789:ABCdefGhIJKlmnoPQRsTUVwxyZ" in secret_parts(url)
    shown = redacted_url(url)
    assert shown.startswith("tgram://")
    assert "ABCdefGhIJKlmnoPQRsTUVwxyZ" not in shown
    assert "pass123" not in redacted_url("json://user:pass123@127.0.0.1/x")


def test_a_url_apprise_cannot_use_is_a_config_error_at_its_line_without_the_url(tmp_path):
    (tmp_path / "config.toml").write_text(
        textwrap.dedent(f"""
        [channels.chat]
        kind = "apprise"
        url = "nosuchservice://{SECRET}"
        """)
    )
    with pytest.raises(errors.ConfigError) as caught:
        load_config(tmp_path / "config.toml")
    text = str(caught.value)
    assert "config.toml:4" in text
    assert "nosuchservice://" in text
    assert SECRET not in text


async def test_a_stored_body_that_is_not_ours_is_a_dead_letter_at_once(receiver):
    cfg = AppriseChannelConfig.model_validate({"kind": "apprise", "url": receiver.url()})
    channel = AppriseChannel("chat", cfg, clock=ManualClock())
    now = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    bad = Delivery(id="d", event_id="e", channel="chat", body=b"[]", next_attempt_at=now, created_at=now)
    result = await channel.send(bad)
    assert (result.ok, result.permanent) == (False, True)
    assert receiver.received == []


def test_a_resolution_is_sent_as_good_news():
    cfg = AppriseChannelConfig.model_validate({"kind": "apprise", "url": "json://127.0.0.1/x"})
    channel = AppriseChannel("chat", cfg, clock=ManualClock())
    event = Event(
        id="evt",
        rule_id="r",
        type="t",
        status="resolved",
        severity="critical",
        key=ResourceKey(source="podero.wallbox", provider="podero", resource_id=WB),
        sequence=2,
        changes=(),
        state={},
        occurred_at=datetime(2026, 11, 22, 21, 0, tzinfo=UTC),
    )
    stored = channel.render(event, RenderContext(old=None))
    assert b'"type":"success"' in stored
