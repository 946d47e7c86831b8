"""Local receivers for what the bridge sends: a webhook sink that verifies Standard Webhooks signatures
and an SMTP mailbox (aiosmtpd, in the running event loop), both recording what arrived and able to
answer with scripted failures.

Waiting is event-driven (`asyncio.Condition`), never a polling sleep.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from typing import Any

import orjson
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bridge.clock import Clock

DEFAULT_TOLERANCE = timedelta(minutes=5)  # the standardwebhooks library's own window


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedWebhook:
    """One POST the sink received, genuine or not; `status` is what the sink answered."""

    name: str  # the `{name}` in /hooks/{name}
    webhook_id: str | None
    timestamp: datetime | None
    body: bytes
    json: Any  # the parsed body, None when it is not JSON
    headers: dict[str, str]
    verified: bool
    status: int
    received_at: datetime


async def _wait_until(cond: asyncio.Condition, predicate: Callable[[], bool], seconds: float) -> None:
    async with asyncio.timeout(seconds), cond:
        await cond.wait_for(predicate)


class WebhookSink:
    """`POST /hooks/{name}`: verify, record, answer 204 (or a scripted status); a bad signature gets 400.

    With no `clock` the library's `Webhook.verify` decides (timestamp window on the wall clock). Pass
    the bridge's clock (a ManualClock in tests) to check the window against that clock instead; the
    signature itself is computed by the library either way.
    """

    def __init__(
        self, secret: str, *, clock: Clock | None = None, tolerance: timedelta = DEFAULT_TOLERANCE
    ) -> None:
        self._webhook = Webhook(secret)
        self._clock = clock
        self._tolerance = tolerance
        self.received: list[ReceivedWebhook] = []
        self.url = ""  # set by whoever serves the app, for convenience only
        self._script: deque[tuple[int, dict[str, str]]] = deque()
        self._arrived = asyncio.Condition()

    @property
    def verified(self) -> list[ReceivedWebhook]:
        """The genuine deliveries, in arrival order (including those answered with a scripted error)."""
        return [r for r in self.received if r.verified]

    def respond_with(self, *statuses: int, headers: dict[str, str] | None = None) -> None:
        """Answer the next genuine deliveries with these statuses, in order (e.g. 500, 500, 200)."""
        self._script.extend((status, dict(headers or {})) for status in statuses)

    def clear_script(self) -> None:
        """Forget scripted statuses not used yet: the receiver answers 204 again."""
        self._script.clear()

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedWebhook]:  # noqa: ASYNC109 -- a plain deadline reads best in tests
        """Wait until `n` verified webhooks arrived in total; TimeoutError otherwise."""
        await _wait_until(self._arrived, lambda: len(self.verified) >= n, timeout)
        return self.verified

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hooks/{name}", self._receive)
        return app

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        timestamp = _timestamp(headers.get("webhook-timestamp"))
        verified = self._verify(body, headers, timestamp)
        status, extra = 400, dict[str, str]()
        if verified:
            status, extra = self._script.popleft() if self._script else (204, {})
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            parsed = None
        self.received.append(
            ReceivedWebhook(
                name=request.match_info["name"],
                webhook_id=headers.get("webhook-id"),
                timestamp=timestamp,
                body=body,
                json=parsed,
                headers=headers,
                verified=verified,
                status=status,
                received_at=self._clock.now() if self._clock else datetime.now(UTC),
            )
        )
        async with self._arrived:
            self._arrived.notify_all()
        if not verified:
            return web.json_response({"error": "invalid signature"}, status=400)
        return web.Response(status=status, headers=extra)

    def _verify(self, body: bytes, headers: dict[str, str], timestamp: datetime | None) -> bool:
        try:
            if self._clock is None:
                self._webhook.verify(body, headers, json_parse=False)
                return True
            msg_id, signatures = headers.get("webhook-id"), headers.get("webhook-signature", "")
            if not msg_id or timestamp is None or abs(self._clock.now() - timestamp) > self._tolerance:
                return False
            expected = self._webhook.sign(msg_id, timestamp, body.decode()).encode()
            return any(hmac.compare_digest(expected, s.encode()) for s in signatures.split(" "))
        except (WebhookVerificationError, ValueError):  # ValueError covers bad base64 and bad UTF-8
            return False


def _timestamp(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedMail:
    """One accepted message with its SMTP envelope."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    received_at: datetime


class MailSink:
    """An SMTP server on 127.0.0.1 that accepts everything (or replies as scripted) and records it."""

    def __init__(self, *, hostname: str = "mailbox.wattbridge.local", clock: Clock | None = None) -> None:
        self.hostname = hostname
        self._clock = clock
        self.received: list[ReceivedMail] = []
        self.rejected = 0
        self.port = 0
        self._script: deque[str] = deque()
        self._server: asyncio.Server | None = None
        self._protocols: list[SMTP] = []
        self._arrived = asyncio.Condition()

    @property
    def messages(self) -> list[EmailMessage]:
        """Accepted messages, parsed; `X-MailFrom` and `X-RcptTo` carry the envelope."""
        return [r.message for r in self.received]

    def reply_with(self, *replies: str) -> None:
        """Reply to the next DATA commands with these lines, e.g. "451 4.3.0 Try later"; 2xx accepts."""
        self._script.extend(replies)

    async def start(self, port: int = 0) -> None:
        loop = asyncio.get_running_loop()

        def protocol() -> SMTP:
            # hostname and loop passed explicitly: no getfqdn() lookup, no get_event_loop() deprecation.
            smtp = SMTP(self, hostname=self.hostname, loop=loop)
            self._protocols.append(smtp)
            return smtp

        self._server = await loop.create_server(protocol, "127.0.0.1", port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for smtp in self._protocols:
            if smtp.transport is not None:
                smtp.transport.close()
        self._protocols.clear()
        await self._server.wait_closed()
        self._server = None

    async def wait_for(self, n: int, timeout: float = 5.0) -> list[EmailMessage]:  # noqa: ASYNC109 -- a plain deadline reads best in tests
        """Wait until `n` messages were accepted in total; TimeoutError otherwise."""
        await _wait_until(self._arrived, lambda: len(self.received) >= n, timeout)
        return self.messages

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = self._script.popleft() if self._script else "250 Message accepted for delivery"
        if not reply.startswith("2"):
            self.rejected += 1
            return reply
        raw = envelope.original_content or envelope.content or b""
        raw = raw if isinstance(raw, bytes) else raw.encode()
        # SMTP lines end in CRLF; parse as local text so get_content() reads naturally.
        message = BytesParser(policy=default_policy).parsebytes(raw.replace(b"\r\n", b"\n"))
        message["X-MailFrom"] = envelope.mail_from or ""
        message["X-RcptTo"] = ", ".join(envelope.rcpt_tos)
        self.received.append(
            ReceivedMail(
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                message=message,
                received_at=self._clock.now() if self._clock else datetime.now(UTC),
            )
        )
        async with self._arrived:
            self._arrived.notify_all()
        return reply
