"""Signing-secret rotation (#15): with `previous_secret` set, every attempt carries both signatures in
`webhook-signature` (Standard Webhooks: space-separated `v1,…` entries), so a receiver verifying with
either secret, through the standardwebhooks library, accepts it."""

from __future__ import annotations

import base64

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bridge.channels.base import RenderContext
from bridge.channels.webhook import WebhookChannel
from bridge.clock import SystemClock
from bridge.config.loader import load_config
from bridge.config.models import WebhookChannelConfig
from bridge.contracts.samples import sample_event
from bridge.errors import ConfigError
from bridge.model import Delivery

OLD = "whsec_" + base64.b64encode(b"the-old-secret-0123456789abcdef").decode()
NEW = "whsec_" + base64.b64encode(b"the-new-secret-0123456789abcdef").decode()
OTHER = "whsec_" + base64.b64encode(b"nobody-has-this-secret-01234567").decode()


@pytest.fixture
async def receiver(aiohttp_server):
    """Records the raw body and headers of each POST, as a partner's endpoint gets them."""
    got: list[tuple[bytes, dict[str, str]]] = []

    async def hook(request: web.Request) -> web.Response:
        got.append((await request.read(), dict(request.headers)))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = await aiohttp_server(app)
    return str(server.make_url("/hook")), got


async def send(url: str, **secrets: str) -> None:
    cfg = WebhookChannelConfig(kind="webhook", url=url, **secrets)
    event = sample_event("podero.wallbox")
    async with aiohttp.ClientSession() as session:
        channel = WebhookChannel("partner", cfg, session=session, clock=SystemClock())
        body = channel.render(event, RenderContext(old=None))
        result = await channel.send(
            Delivery(id="msg_rot", event_id=event.id, channel="partner", body=body,
                     next_attempt_at=event.occurred_at, created_at=event.occurred_at)
        )  # fmt: skip
    assert result.ok, result.error


async def test_during_a_rotation_both_secrets_verify_the_same_delivery(receiver):
    url, got = receiver
    await send(url, secret=NEW, previous_secret=OLD)
    [(body, headers)] = got
    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    for secret in (NEW, OLD):
        assert Webhook(secret).verify(body, headers)["type"] == "sample.event"
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers)


async def test_without_a_previous_secret_one_signature_is_sent_and_the_old_secret_fails(receiver):
    url, got = receiver
    await send(url, secret=NEW)
    [(body, headers)] = got
    assert " " not in headers["webhook-signature"]
    Webhook(NEW).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OLD).verify(body, headers)


@pytest.mark.parametrize("bad", ["whsec_", "whsec_abcde"])
def test_a_malformed_previous_secret_is_refused_at_load_without_showing_it(bad):
    with pytest.raises(ValidationError) as raised:
        WebhookChannelConfig(kind="webhook", url="https://x.example/h", secret=NEW, previous_secret=bad)
    [error] = raised.value.errors()
    assert error["loc"] == ("previous_secret",)
    assert error["msg"].startswith("Value error, not a Standard Webhooks secret: expected whsec_")
    assert "abcde" not in error["msg"]


def test_the_config_file_names_a_bad_secrets_line_and_never_its_value(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text(
        f'[channels.p]\nkind = "webhook"\nurl = "https://x.example/h"\nsecret = "{NEW}"\n'
        'previous_secret = "whsec_abcde"\n'
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    [problem] = raised.value.problems
    assert str(problem).startswith(f"{path}:5: channels.p.previous_secret: not a Standard Webhooks secret")
    assert "abcde" not in str(raised.value)
