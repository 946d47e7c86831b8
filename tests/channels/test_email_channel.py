"""The email channel sends a stable Message-ID per notification and classifies SMTP replies."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import orjson
import pytest
from aiosmtpd.smtp import SMTP as SmtpServerProtocol  # the server side, not aiosmtplib's client

from bridge.channels.base import RenderContext
from bridge.channels.email import EmailChannel
from bridge.clock import ManualClock
from bridge.config.models import EmailChannelConfig, SmtpConfig
from bridge.model import Change, Delivery, Event, ResourceKey, delivery_id

OCCURRED = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


@dataclass
class Mailbox:
    """A minimal aiosmtpd handler: keeps accepted messages, or answers with a scripted reply."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    rcpt_reply: str | None = None
    data_reply: str | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.rcpt_reply:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    box = Mailbox()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SmtpServerProtocol(box, hostname="wattbridge.test"), "127.0.0.1", 0
    )
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()
    await server.wait_closed()


def make_channel(port: int, clock: ManualClock, **cfg: object) -> EmailChannel:
    channel_cfg = EmailChannelConfig.model_validate(
        {
            "kind": "email",
            "to": ["ops@example.com", "oncall@example.com"],
            "from": "bridge@example.com",
            **cfg,
        }
    )
    smtp = SmtpConfig(host="127.0.0.1", port=port, timeout=timedelta(seconds=5))
    return EmailChannel("ops", channel_cfg, smtp, clock=clock)


def make_event() -> Event:
    return Event(
        id="evt_0456",
        rule_id="wallbox-action-needed",
        type="wallbox.action_needed",
        status="firing",
        severity="warning",
        key=ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1"),
        sequence=3,
        changes=(Change(field="action_needed", old=False, new=True),),
        state={"action_needed": True},
        occurred_at=OCCURRED,
    )


def make_delivery(channel: EmailChannel, ctx: RenderContext | None = None) -> Delivery:
    event = make_event()
    return Delivery(
        id=delivery_id(event.id, channel.name),
        event_id=event.id,
        channel=channel.name,
        body=channel.render(event, ctx or RenderContext(old=None)),
        next_attempt_at=OCCURRED,
        created_at=OCCURRED,
    )


def test_render_uses_the_rules_subject_and_body_when_given():
    channel = make_channel(25, ManualClock())
    ctx = RenderContext(old=None, email_subject="Wallbox needs action", email_body="Please reauthenticate.")

    body = orjson.loads(channel.render(make_event(), ctx))

    assert body == {
        "subject": "Wallbox needs action",
        "text": "Please reauthenticate.",
        "to": ["ops@example.com", "oncall@example.com"],
    }


def test_render_defaults_to_a_summary_listing_the_changes():
    channel = make_channel(25, ManualClock())

    body = orjson.loads(channel.render(make_event(), RenderContext(old=None, rule_description="Act now")))

    assert "wallbox.action_needed" in body["subject"]
    assert "firing" in body["subject"]
    assert "action_needed: false -> true" in body["text"]
    assert "Act now" in body["text"]


async def test_a_sent_email_has_the_rendered_content_and_a_stable_message_id(mailbox):
    clock = ManualClock(OCCURRED)
    channel = make_channel(mailbox.port, clock, subject_prefix="[ops] ")
    delivery = make_delivery(
        channel, RenderContext(old=None, email_subject="Needs action", email_body="Hi.\n")
    )

    first = await channel.send(delivery)
    clock.advance(timedelta(minutes=5))
    second = await channel.send(delivery)

    assert first.ok
    assert second.ok
    assert first.status_code == 250
    one, two = mailbox.messages
    assert one["Message-ID"] == two["Message-ID"] == f"<{delivery.id}@wattbridge>"
    assert one["From"] == "bridge@example.com"
    assert one["To"] == "ops@example.com, oncall@example.com"
    assert one["Subject"] == "[ops] Needs action"
    assert one.get_content().replace("\r\n", "\n") == "Hi.\n"  # SMTP transports CRLF line ends
    assert email.utils.parsedate_to_datetime(one["Date"]) == OCCURRED
    assert email.utils.parsedate_to_datetime(two["Date"]) == OCCURRED + timedelta(minutes=5)


async def test_a_4xx_smtp_reply_is_retryable(mailbox):
    channel = make_channel(mailbox.port, ManualClock())
    mailbox.data_reply = "451 Try again later"

    result = await channel.send(make_delivery(channel))

    assert (result.ok, result.permanent, result.status_code) == (False, False, 451)
    assert mailbox.messages == []


async def test_a_5xx_smtp_reply_is_permanent(mailbox):
    channel = make_channel(mailbox.port, ManualClock())
    mailbox.data_reply = "554 Rejected as spam"

    result = await channel.send(make_delivery(channel))

    assert (result.ok, result.permanent, result.status_code) == (False, True, 554)
    assert "Rejected" in (result.response_excerpt or "")


async def test_every_recipient_refused_with_5xx_is_permanent(mailbox):
    channel = make_channel(mailbox.port, ManualClock())
    mailbox.rcpt_reply = "550 No such user"

    result = await channel.send(make_delivery(channel))

    assert (result.ok, result.permanent, result.status_code) == (False, True, 550)


async def test_an_unreachable_smtp_server_is_retryable_and_does_not_raise():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = make_channel(port, ManualClock())

    result = await channel.send(make_delivery(channel))

    assert not result.ok
    assert not result.permanent
    assert (result.error or "").startswith("SMTP")


async def test_a_body_that_is_not_ours_is_a_permanent_failure():
    channel = make_channel(25, ManualClock())
    delivery = Delivery(
        id="msg_x",
        event_id="evt_x",
        channel="ops",
        body=b"not json",
        next_attempt_at=OCCURRED,
        created_at=OCCURRED,
    )

    result = await channel.send(delivery)

    assert (result.ok, result.permanent) == (False, True)
