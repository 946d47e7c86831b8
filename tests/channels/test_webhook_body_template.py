"""A webhook channel may replace the envelope with its own body (Slack, Teams, …): rendered once,
signed like any other; a template that fails at run time still sends (the envelope, error noted)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from bridge.channels.base import RenderContext
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.models import WebhookChannelConfig
from bridge.model import Change, Delivery, Event, ResourceKey
from bridge.simulator.sinks import WebhookSink

SECRET = "whsec_" + base64.b64encode(b"template-test-secret-0123456789").decode()
AT = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
SLACK = (
    '{"text": {{ ("[" ~ data.severity ~ "] " ~ type ~ ": wallbox " ~ data.resource_id'
    ' ~ " by " ~ new.owner.email) | tojson }}}'
)
EVENT = Event(
    id="evt_1",
    rule_id="wallbox-action-needed",
    type="wallbox.action_needed",
    status="firing",
    severity="warning",
    key=ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1"),
    sequence=3,
    changes=(Change(field="action_needed", old=False, new=True),),
    state={"action_needed": True, "owner": {"email": 'ada "the" admin@example.com'}},
    occurred_at=AT,
)


@pytest.fixture
async def sink(aiohttp_server) -> WebhookSink:
    s = WebhookSink(SECRET, clock=ManualClock(AT))
    server = await aiohttp_server(s.app())
    s.url = str(server.make_url("/hooks/slack"))
    return s


def channel(session, url: str, template: str) -> WebhookChannel:
    cfg = WebhookChannelConfig(
        kind="webhook", url=url, secret=SECRET, body_template=template, content_type="application/json"
    )
    return WebhookChannel("slack", cfg, session=session, clock=ManualClock(AT))


async def test_a_slack_body_is_rendered_once_signed_and_sent(sink):
    async with aiohttp.ClientSession() as session:
        ch = channel(session, sink.url, SLACK)
        body = ch.render(EVENT, RenderContext(old=None))
        result = await ch.send(Delivery(id="msg_1", event_id=EVENT.id, channel="slack", body=body,
                                        next_attempt_at=AT, created_at=AT))  # fmt: skip

    assert result.ok
    [hook] = sink.verified
    assert hook.json == {
        "text": '[warning] wallbox.action_needed: wallbox wb-1 by ada "the" admin@example.com'
    }


def test_a_template_failing_at_run_time_sends_the_envelope_with_the_error_noted():
    ch = WebhookChannel(
        "slack",
        WebhookChannelConfig(
            kind="webhook",
            url="http://127.0.0.1:9/x",
            secret=SECRET,
            body_template='{"text": "{{ new.no_such_field }}"}',
        ),
        session=None,  # type: ignore[arg-type]  # rendering needs no network
        clock=ManualClock(AT),
    )
    body = orjson.loads(ch.render(EVENT, RenderContext(old=None)))

    assert body["type"] == "wallbox.action_needed"
    assert body["data"]["resource_id"] == "wb-1"
    assert "no_such_field" in body["template_error"]


def test_a_body_template_that_does_not_compile_is_a_config_error():
    with pytest.raises(ValidationError, match="does not compile"):
        WebhookChannelConfig(kind="webhook", url="http://127.0.0.1:9/x", secret=SECRET,
                             body_template='{"text": {{ data.rule }')  # fmt: skip
