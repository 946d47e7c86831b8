"""The email channel speaks TLS the two ways relays offer it, authenticates, and sends HTML as an
alternative: against a real aiosmtpd server with a certificate from a private CA (trustme)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme
from aiosmtpd.smtp import SMTP as SmtpServerProtocol
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from bridge.channels.base import RenderContext
from bridge.channels.email import EmailChannel
from bridge.clock import ManualClock
from bridge.config.models import EmailChannelConfig, SmtpConfig
from tests.channels.test_email_channel import make_delivery

USER, PASSWORD = "bridge", "relay-password-1"


@dataclass
class TlsMailbox:
    """Accepts mail; records whether the session was encrypted and who logged in."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    encrypted: list[bool] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.encrypted.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 Message accepted"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(),
            PASSWORD.encode(),
        )
        if ok:
            self.logins.append(USER)
        return AuthResult(success=ok)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
async def starttls_box(ca: trustme.CA) -> AsyncIterator[TlsMailbox]:
    box = TlsMailbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SmtpServerProtocol(
            box,
            hostname="relay.test",
            tls_context=server_context(ca),
            require_starttls=True,
            authenticator=box.authenticate,
            auth_required=True,
        ),
        "127.0.0.1",
        0,
    )
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()
    await server.wait_closed()


@pytest.fixture
async def implicit_tls_box(ca: trustme.CA) -> AsyncIterator[TlsMailbox]:
    box = TlsMailbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SmtpServerProtocol(box, hostname="relay.test"),
        "127.0.0.1",
        0,
        ssl=server_context(ca),
    )
    box.port = server.sockets[0].getsockname()[1]
    yield box
    server.close()
    await server.wait_closed()


def channel(port: int, **smtp: object) -> EmailChannel:
    cfg = EmailChannelConfig.model_validate(
        {"kind": "email", "to": ["ops@example.com"], "from": "bridge@example.com"}
    )
    relay = SmtpConfig.model_validate(
        {"host": "127.0.0.1", "port": port, "timeout": timedelta(seconds=5), **smtp}
    )
    return EmailChannel("ops", cfg, relay, clock=ManualClock())


async def test_starttls_with_auth_delivers_over_an_encrypted_session(starttls_box, ca_file):
    ops = channel(
        starttls_box.port, starttls=True, ca_file=ca_file, username=USER, password=SecretStr(PASSWORD)
    )

    result = await ops.send(make_delivery(ops))

    assert result.ok, result.error
    assert starttls_box.encrypted == [True]
    assert starttls_box.logins == [USER]


async def test_a_relay_requiring_starttls_refuses_a_plain_session_and_it_is_retried(starttls_box, ca_file):
    ops = channel(starttls_box.port, starttls=False, username=None)

    result = await ops.send(make_delivery(ops))

    assert not result.ok
    assert not result.permanent  # a relay policy problem; the message stays pending, nothing lost
    assert starttls_box.messages == []


async def test_wrong_credentials_are_refused_without_printing_the_password(starttls_box, ca_file):
    ops = channel(
        starttls_box.port, starttls=True, ca_file=ca_file, username=USER, password=SecretStr("wrong-pw-9")
    )

    result = await ops.send(make_delivery(ops))

    assert not result.ok
    assert starttls_box.messages == []
    assert "wrong-pw-9" not in f"{result.error} {result.response_excerpt}"


async def test_implicit_tls_delivers_and_an_untrusted_certificate_is_a_retryable_failure(
    implicit_tls_box, ca_file
):
    trusted = channel(implicit_tls_box.port, use_tls=True, ca_file=ca_file)
    untrusted = channel(implicit_tls_box.port, use_tls=True)  # the system store does not know our CA

    assert (await trusted.send(make_delivery(trusted))).ok
    refused = await untrusted.send(make_delivery(untrusted))

    assert implicit_tls_box.encrypted == [True]
    assert not refused.ok
    assert not refused.permanent
    assert "SSL" in (refused.error or "") or "certificate" in (refused.error or "").lower()


async def test_an_html_alternative_travels_beside_the_text(implicit_tls_box, ca_file):
    ops = channel(implicit_tls_box.port, use_tls=True, ca_file=ca_file)
    ctx = RenderContext(old=None, email_subject="Wallbox needs action", email_body="Plain words\n",
                        email_html="<p>Rich <b>words</b></p>")  # fmt: skip

    assert (await ops.send(make_delivery(ops, ctx))).ok

    [msg] = implicit_tls_box.messages
    assert msg.get_content_type() == "multipart/alternative"
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert text is not None
    assert text.get_content().splitlines() == ["Plain words"]
    assert html is not None
    assert "<b>words</b>" in html.get_content()
