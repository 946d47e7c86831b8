"""Acknowledge / snooze links in what people read (#14): an email's text (and its HTML part),
Apprise's body and Alertmanager's description and `acknowledge_url` annotation carry them; an
escalation step says it escalated; without links nothing is added."""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import orjson

from bridge.channels.alertmanager import AlertmanagerChannel
from bridge.channels.apprise import AppriseChannel
from bridge.channels.base import RenderContext
from bridge.channels.email import EmailChannel
from bridge.clock import ManualClock
from bridge.config.models import (
    AlertmanagerChannelConfig,
    AppriseChannelConfig,
    EmailChannelConfig,
    SmtpConfig,
)
from bridge.model import Event, ResourceKey

NOW = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
EVENT = Event(
    id="evt_1",
    rule_id="action-needed",
    type="wallbox.action_needed",
    status="firing",
    severity="warning",
    key=ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1"),
    sequence=3,
    changes=(),
    state={},
    occurred_at=NOW,
)
LINKS = {
    "acknowledge": "https://b.example.com/links/v1.A.B",
    "snooze": {"1h": "https://b.example.com/links/v1.C.D"},
    "expires_at": "2026-11-29T21:00:00Z",
}
CTX = RenderContext(old=None, links=LINKS, escalation=2, email_html="<p>hi</p>")


def test_an_email_carries_the_links_in_its_text_and_html_and_says_it_escalated():
    cfg = EmailChannelConfig.model_validate(
        {"kind": "email", "to": ["a@example.com"], "from": "b@example.com"}
    )
    channel = EmailChannel("ops", cfg, SmtpConfig(), clock=ManualClock(NOW))
    stored = orjson.loads(channel.render(EVENT, CTX))
    assert "Escalated (step 2): nobody acknowledged it in time." in stored["text"]
    assert (
        "Acknowledge (stops reminders and escalation): https://b.example.com/links/v1.A.B" in stored["text"]
    )
    assert "Snooze 1h: https://b.example.com/links/v1.C.D" in stored["text"]
    assert '<a href="https://b.example.com/links/v1.A.B">Acknowledge</a>' in stored["html"]
    plain = orjson.loads(channel.render(EVENT, RenderContext(old=None)))
    assert "Acknowledge" not in plain["text"]
    assert "links" not in plain["text"]


def test_apprise_and_alertmanager_carry_the_links():
    cfg = AppriseChannelConfig.model_validate({"kind": "apprise", "url": "json://127.0.0.1/x"})
    body = orjson.loads(AppriseChannel("chat", cfg, clock=ManualClock(NOW)).render(EVENT, CTX))["body"]
    assert "Acknowledge (stops reminders and escalation): https://b.example.com/links/v1.A.B" in body


async def test_alertmanager_carries_an_acknowledge_url_annotation():
    cfg = AlertmanagerChannelConfig.model_validate({"kind": "alertmanager", "url": "http://127.0.0.1:9093"})
    async with aiohttp.ClientSession() as session:
        channel = AlertmanagerChannel("am", cfg, session=session, clock=ManualClock(NOW))
        [alert] = orjson.loads(channel.render(EVENT, CTX))
    assert alert["annotations"]["acknowledge_url"] == "https://b.example.com/links/v1.A.B"
    assert "Snooze 1h: https://b.example.com/links/v1.C.D" in alert["annotations"]["description"]
