"""The webhook channel signs per Standard Webhooks, resends identical bytes, and classifies answers."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import aiohttp
import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from bridge import __version__
from bridge.channels.base import RenderContext
from bridge.channels.webhook import WebhookChannel
from bridge.clock import ManualClock
from bridge.config.models import WebhookChannelConfig
from bridge.model import Change, Delivery, Event, ResourceKey, delivery_id

SECRET = "whsec_" + base64.b64encode(b"channel-test-secret-0123456789ab").decode()
OCCURRED = datetime(2026, 11, 22, 21, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """A webhook receiver whose answers the test scripts; it records every request it gets."""

    answers: list[web.StreamResponse] = field(default_factory=list)
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    redirected_hits: int = 0
    url: str = ""

    async def hook(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.headers), await request.read()))
        return self.answers.pop(0) if self.answers else web.Response(status=204)

    async def elsewhere(self, request: web.Request) -> web.Response:
        self.redirected_hits += 1
        return web.Response(status=200)


@pytest.fixture
async def receiver(aiohttp_server) -> Receiver:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.hook)
    app.router.add_post("/elsewhere", rec.elsewhere)
    server = await aiohttp_server(app)
    rec.url = str(server.make_url("/hook"))
    return rec


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock() -> ManualClock:
    # Near real time, so standardwebhooks' own verify (which checks a 5-minute window) accepts it.
    return ManualClock(datetime.now(UTC).replace(microsecond=0))


def make_channel(url: str, session, clock, **extra) -> WebhookChannel:
    cfg = WebhookChannelConfig.model_validate({"kind": "webhook", "url": url, "secret": SECRET, **extra})
    return WebhookChannel("partner", cfg, session=session, clock=clock)


def make_event() -> Event:
    return Event(
        id="evt_0123",
        rule_id="wallbox-action-needed",
        type="wallbox.action_needed",
        status="firing",
        severity="warning",
        key=ResourceKey(source="podero.wallbox", provider="podero", resource_id="wb-1"),
        sequence=17,
        changes=(Change(field="action_needed", old=False, new=True),),
        state={"action_needed": True, "actions": [{"code": "reauthenticate"}]},
        occurred_at=OCCURRED,
    )


def make_delivery(channel: WebhookChannel) -> Delivery:
    event = make_event()
    return Delivery(
        id=delivery_id(event.id, channel.name),
        event_id=event.id,
        channel=channel.name,
        body=channel.render(event, RenderContext(old=None)),
        next_attempt_at=OCCURRED,
        created_at=OCCURRED,
    )


def test_render_produces_the_spec_envelope(session, clock):
    channel = make_channel("http://127.0.0.1:9/hook", session, clock)

    body = orjson.loads(channel.render(make_event(), RenderContext(old={"action_needed": False})))

    assert body == {
        "type": "wallbox.action_needed",
        "timestamp": "2026-11-22T21:00:00Z",
        "data": {
            "event_id": "evt_0123",
            "rule": "wallbox-action-needed",
            "status": "firing",
            "severity": "warning",
            "source": "podero.wallbox",
            "provider": "podero",
            "resource_id": "wb-1",
            "sequence": 17,
            "changes": [{"field": "action_needed", "old": False, "new": True}],
            "state": {"action_needed": True, "actions": [{"code": "reauthenticate"}]},
        },
    }


async def test_a_sent_webhook_verifies_with_standardwebhooks(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock, headers={"X-Partner": "acme"})
    delivery = make_delivery(channel)

    result = await channel.send(delivery)

    assert result.ok
    assert result.status_code == 204
    assert result.latency_ms > 0
    headers, body = receiver.requests[0]
    assert Webhook(SECRET).verify(body, headers) == orjson.loads(delivery.body)
    assert headers["webhook-id"] == delivery.id
    assert headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"Wattbridge/{__version__}"
    assert headers["X-Partner"] == "acme"


async def test_every_attempt_carries_the_same_id_and_identical_bytes(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock)
    delivery = make_delivery(channel)
    receiver.answers = [web.Response(status=503)]

    first = await channel.send(delivery)
    clock.advance(timedelta(seconds=5))
    second = await channel.send(delivery)

    assert (first.ok, second.ok) == (False, True)
    (h1, b1), (h2, b2) = receiver.requests
    assert h1["webhook-id"] == h2["webhook-id"] == delivery.id
    assert b1 == b2 == delivery.body
    assert int(h2["webhook-timestamp"]) - int(h1["webhook-timestamp"]) == 5
    assert h1["webhook-signature"] != h2["webhook-signature"]  # re-signed with the new timestamp
    for headers, body in receiver.requests:
        Webhook(SECRET).verify(body, headers)


async def test_a_redirect_is_not_followed_and_counts_as_a_retryable_failure(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock)
    receiver.answers = [web.Response(status=307, headers={"Location": "/elsewhere"})]

    result = await channel.send(make_delivery(channel))

    assert not result.ok
    assert not result.permanent
    assert result.status_code == 307
    assert "redirect" in (result.error or "")
    assert receiver.redirected_hits == 0


async def test_410_gone_is_permanent_and_disables_the_channel(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock)
    receiver.answers = [web.Response(status=410, text="gone")]

    result = await channel.send(make_delivery(channel))
    after = await channel.send(make_delivery(channel))

    assert (result.ok, result.permanent, result.status_code) == (False, True, 410)
    assert channel.disabled
    assert after.permanent
    assert len(receiver.requests) == 1  # a disabled channel does not call the receiver again


async def test_429_with_retry_after_seconds_is_retryable_with_that_delay(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock)
    receiver.answers = [web.Response(status=429, headers={"Retry-After": "120"})]

    result = await channel.send(make_delivery(channel))

    assert (result.ok, result.permanent, result.status_code, result.retry_after) == (False, False, 429, 120.0)


async def test_retry_after_as_an_http_date_is_measured_from_the_clock(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock)
    when = email.utils.format_datetime(clock.now() + timedelta(minutes=10), usegmt=True)
    receiver.answers = [web.Response(status=503, headers={"Retry-After": when})]

    result = await channel.send(make_delivery(channel))

    assert result.retry_after == pytest.approx(600.0)
    assert not result.permanent


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        pytest.param(500, False, id="500-retried"),
        pytest.param(408, False, id="408-retried"),
        pytest.param(400, True, id="400-permanent"),
        pytest.param(401, True, id="401-permanent"),
        pytest.param(404, True, id="404-permanent"),
    ],
)
async def test_error_statuses_are_classified(receiver, session, clock, status, permanent):
    channel = make_channel(receiver.url, session, clock)
    receiver.answers = [web.Response(status=status, text="nope")]

    result = await channel.send(make_delivery(channel))

    assert (result.ok, result.permanent, result.status_code) == (False, permanent, status)
    assert result.response_excerpt == "nope"
    assert not channel.disabled


async def test_the_response_excerpt_is_capped_at_256_bytes(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock)
    receiver.answers = [web.Response(status=200, text="x" * 10_000)]

    result = await channel.send(make_delivery(channel))

    assert result.ok
    assert result.response_excerpt == "x" * 256


async def test_a_refused_connection_is_retryable_and_does_not_raise(session, clock):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    channel = make_channel(f"http://127.0.0.1:{port}/hook", session, clock)

    result = await channel.send(make_delivery(channel))

    assert not result.ok
    assert not result.permanent
    assert result.error is not None
    assert result.error.startswith("connection error")


async def test_a_receiver_slower_than_the_timeout_is_retryable(aiohttp_server, session, clock):
    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await asyncio.Event().wait()  # never answers
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", slow)
    server = await aiohttp_server(app)
    channel = make_channel(str(server.make_url("/hook")), session, clock, timeout="100ms")

    result = await channel.send(make_delivery(channel))

    assert not result.ok
    assert not result.permanent
    assert result.error is not None
    assert "timeout" in result.error


async def test_a_body_that_is_not_utf8_is_a_permanent_failure_without_a_request(receiver, session, clock):
    channel = make_channel(receiver.url, session, clock)
    delivery = Delivery(
        id="msg_x",
        event_id="evt_x",
        channel="partner",
        body=b"\xff\xfe",
        next_attempt_at=OCCURRED,
        created_at=OCCURRED,
    )

    result = await channel.send(delivery)

    assert (result.ok, result.permanent) == (False, True)
    assert receiver.requests == []


def test_headers_sign_exactly_as_standardwebhooks_and_user_headers_cannot_replace_the_signature(
    session, clock
):
    channel = make_channel(
        "http://127.0.0.1:1/hook",
        session,
        clock,
        headers={"Webhook-Id": "forged", "WEBHOOK-SIGNATURE": "v1,forged", "X-Partner": "acme"},
    )
    delivery = make_delivery(channel)
    when = datetime(2026, 11, 22, 22, 0, 30, 900000, tzinfo=timezone(timedelta(hours=1)))  # not UTC

    headers = channel.headers(delivery, when)

    assert headers.getall("webhook-id") == [delivery.id]
    assert headers.getall("webhook-timestamp") == [str(int(when.timestamp()))]
    assert headers.getall("webhook-signature") == [
        Webhook(SECRET).sign(delivery.id, when.astimezone(UTC), delivery.body.decode())
    ]
    assert headers["X-Partner"] == "acme"
