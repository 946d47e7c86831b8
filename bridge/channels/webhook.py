"""Webhook channel: the SPEC §6 envelope, signed per Standard Webhooks, POSTed and classified.

The body is rendered once (bytes in the outbox); every attempt signs those same bytes with the same
`webhook-id`, so a receiver can deduplicate retries. Sending never raises: the receiver's answer
becomes a SendResult the outbox turns into a retry, a success or a dead letter. The POST goes out on
the channel's own pooled keep-alive connections (`http1.Poster`, #16), not through aiohttp's session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import ssl
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import structlog
from multidict import CIMultiDict
from pydantic import SecretStr
from standardwebhooks import Webhook

from bridge import __version__
from bridge.channels.base import RenderContext, SendResult
from bridge.channels.http1 import EXCERPT_BYTES, Poster
from bridge.channels.outbound import GuardedResolver, OutboundGuard, OutboundRefused
from bridge.clock import Clock
from bridge.config.models import ChannelConfig as AnyChannelConfig
from bridge.config.models import Config, WebhookChannelConfig
from bridge.model import Delivery, Event
from bridge.providers.http import parse_retry_after
from bridge.rules.templates import ENV

log = structlog.get_logger(__name__)

MAX_BODY = 256 * 1024  # a templated body is capped: receivers reject huge payloads anyway
_SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def iso_z(when: datetime) -> str:
    """RFC 3339 in UTC with a `Z`: `2026-11-22T21:00:00Z` (fractional seconds only when present)."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def envelope(event: Event, ctx: RenderContext | None = None) -> dict[str, Any]:
    """The default webhook body (SPEC §6) as a dict; with `ctx`, a repeating or escalating rule's
    firing also carries `data.links` and an escalation step its number `data.escalation` (#14)."""
    body: dict[str, Any] = {
        "type": event.type,
        "timestamp": iso_z(event.occurred_at),
        "data": {
            "event_id": event.id,
            "rule": event.rule_id,
            "status": event.status,
            "severity": event.severity,
            "source": event.key.source,
            "provider": event.key.provider,
            "resource_id": event.key.resource_id,
            "sequence": event.sequence,
            "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in event.changes],
            "state": event.state,
        },
    }
    if ctx is not None and ctx.links:
        body["data"]["links"] = ctx.links
    if ctx is not None and ctx.escalation:
        body["data"]["escalation"] = ctx.escalation
    if event.flap is not None:  # a `wattbridge.flapping` notice (#14): its summary
        body["data"]["flap"] = event.flap
    return body


class WebhookChannel:
    """POSTs signed JSON to one partner URL."""

    kind: str = "webhook"

    def __init__(
        self,
        name: str,
        cfg: WebhookChannelConfig,
        *,
        session: aiohttp.ClientSession,
        clock: Clock,
        outbound: OutboundGuard | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self._cfg = cfg
        self._session = session  # the registry's shared session; a webhook POSTs on its own Poster
        self._clock = clock
        # Standard Webhooks signing (`Webhook.sign`), keyed once: each attempt copies the keyed HMAC
        # and feeds it the body bytes as stored, instead of decoding and re-encoding them. During a
        # rotation both secrets sign, and `webhook-signature` lists both (space-separated, as the
        # spec has it), so a receiver verifying with either the old or the new secret accepts.
        self._macs = [_keyed(s) for s in (cfg.secret, cfg.previous_secret) if s is not None]
        # A literal-IP URL is checked here (names are checked by the session's resolver, #15); the
        # config cannot change under a running channel, so a refused one fails every send at once.
        self._refused = outbound.url_problem(cfg.url, localhost=False) if outbound is not None else None
        # Every header but the three per-attempt ones, built once (user headers replace ours
        # case-insensitively; they may not replace the signature's).
        static: CIMultiDict[str] = CIMultiDict({"user-agent": f"Wattbridge/{__version__}"})
        for header, value in cfg.headers.items():
            static[header] = value  # replaces case-insensitively, so a user may set their own User-Agent
        static["content-type"] = cfg.content_type
        for reserved in _SIGNATURE_HEADERS:
            static.popall(reserved, None)
        self._static_headers = static
        self._timeout_s = cfg.timeout.total_seconds()
        # Names are resolved through the outbound guard, so the address checked is the one connected
        # to; `ssl_context` is for tests (a private CA), the default verifies as aiohttp does.
        self._broken: str | None = None
        self._poster: Poster | None = None
        try:
            self._poster = Poster(
                cfg.url,
                list(static.items()),
                resolver=GuardedResolver(outbound) if outbound is not None else None,
                ssl_context=ssl_context,
            )
        except ValueError as exc:  # a header with a line break: every send fails, nothing is sent
            self._broken = str(exc)
        self._body = ENV.from_string(cfg.body_template) if cfg.body_template is not None else None
        # Set by a 410 Gone: the receiver said the endpoint is gone for good; until an operator
        # re-enables the channel (a restart keeps it: the app reads the stored `bridge.channel`
        # state), further deliveries become dead letters (replayable) instead of hammering it.
        self.disabled = False

    @classmethod
    def from_config(
        cls,
        name: str,
        cfg: AnyChannelConfig,
        *,
        config: Config,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> WebhookChannel:
        if not isinstance(cfg, WebhookChannelConfig):
            raise TypeError(f"channels.{name}: expected a webhook channel config, got kind {cfg.kind!r}")
        return cls(name, cfg, session=session, clock=clock, outbound=OutboundGuard(config.outbound.allow))

    def render(self, event: Event, ctx: RenderContext) -> bytes:
        body = envelope(event, ctx)
        if self._body is None:
            return orjson.dumps(body)
        try:
            text = self._body.render(**body, old=ctx.old, new=event.state)
        except Exception as exc:  # the notification still goes out: the envelope, with the error noted
            log.warning("webhook.template_failed", channel=self.name, error=str(exc))
            return orjson.dumps({**body, "template_error": f"{type(exc).__name__}: {exc}"})
        return text[:MAX_BODY].encode()

    def headers(self, delivery: Delivery, when: datetime) -> CIMultiDict[str]:
        """Every header of one attempt; the signature covers `id.timestamp.body` (Standard Webhooks)."""
        timestamp, signature = self._signature(delivery, when)
        headers = self._static_headers.copy()
        headers["webhook-id"] = delivery.id
        headers["webhook-timestamp"] = timestamp
        headers["webhook-signature"] = signature
        return headers

    def _signature(self, delivery: Delivery, when: datetime) -> tuple[str, str]:
        """`webhook-timestamp` and `webhook-signature` of one attempt (raises on a non-UTF-8 body)."""
        delivery.body.decode()  # Standard Webhooks signs text: refuse bytes that are not UTF-8
        timestamp = str(math.floor(when.timestamp()))
        prefix = f"{delivery.id}.{timestamp}.".encode()
        signatures = []
        for keyed in self._macs:
            mac = keyed.copy()
            mac.update(prefix)
            mac.update(delivery.body)
            signatures.append("v1," + base64.b64encode(mac.digest()).decode())
        return timestamp, " ".join(signatures)

    async def send(self, delivery: Delivery) -> SendResult:
        if self.disabled:
            return SendResult(
                ok=False, permanent=True, error="channel disabled: the receiver answered 410 Gone"
            )
        if self._refused is not None:
            return SendResult(ok=False, permanent=True, error=f"outbound refused: {self._refused}")
        if self._poster is None:
            return SendResult(ok=False, permanent=True, error=f"channel headers: {self._broken}")
        try:
            timestamp, signature = self._signature(delivery, self._clock.now())
        except UnicodeDecodeError:
            return SendResult(ok=False, permanent=True, error="stored webhook body is not UTF-8")
        if not delivery.id.isascii() or not delivery.id.isprintable():
            return SendResult(ok=False, permanent=True, error="delivery id is not printable ASCII")
        extra = b"webhook-id: %b\r\nwebhook-timestamp: %b\r\nwebhook-signature: %b\r\n" % (
            delivery.id.encode(),
            timestamp.encode(),
            signature.encode(),
        )
        started = time.perf_counter()
        try:
            answer = await self._poster.post(extra, delivery.body, within_s=self._timeout_s)
        except TimeoutError:
            return SendResult(ok=False, error=f"timeout after {self._timeout_s:g}s", latency_ms=_ms(started))
        except OutboundRefused as exc:  # retried: a DNS answer may change
            return SendResult(ok=False, error=f"outbound refused: {exc}", latency_ms=_ms(started))
        except OSError as exc:  # refused, reset, TLS verification, a broken answer
            return SendResult(
                ok=False, error=f"connection error: {type(exc).__name__}: {exc}", latency_ms=_ms(started)
            )
        except Exception as exc:  # never raise: the outbox must record and retry whatever happened
            log.exception("webhook.unexpected_error", channel=self.name, delivery_id=delivery.id)
            return SendResult(
                ok=False, error=f"unexpected error: {type(exc).__name__}", latency_ms=_ms(started)
            )
        return self._classify(answer.status, answer.retry_after, answer.excerpt, _ms(started))

    def _classify(self, status: int, retry_after_header: str | None, excerpt: bytes, ms: float) -> SendResult:
        text = excerpt.decode("utf-8", errors="replace")
        if 200 <= status < 300:
            return SendResult(ok=True, status_code=status, latency_ms=ms, response_excerpt=text)
        if status == 410:
            self.disabled = True
            log.error("channel.disabled", channel=self.name, kind=self.kind, status=status)
            return SendResult(
                ok=False,
                status_code=status,
                permanent=True,
                error="HTTP 410 Gone: channel disabled",
                latency_ms=ms,
                response_excerpt=text,
            )
        if 300 <= status < 400:
            # Not followed: a redirect would resend a signed body to a URL nobody configured.
            return SendResult(
                ok=False,
                status_code=status,
                error=f"HTTP {status}: redirect not followed (fix the channel URL)",
                latency_ms=ms,
                response_excerpt=text,
            )
        if status in (408, 429) or status >= 500:
            return SendResult(
                ok=False,
                status_code=status,
                retry_after=parse_retry_after(retry_after_header, now=self._clock.now()),
                error=f"HTTP {status}",
                latency_ms=ms,
                response_excerpt=text,
            )
        return SendResult(
            ok=False,
            status_code=status,
            permanent=400 <= status < 500,
            error=f"HTTP {status}",
            latency_ms=ms,
            response_excerpt=text,
        )

    async def close(self) -> None:
        """Close the kept-alive connections (the session belongs to the app)."""
        if self._poster is not None:
            await self._poster.close()


def _keyed(secret: SecretStr) -> hmac.HMAC:
    value = secret.get_secret_value()
    Webhook(value)  # the library's own check of the secret (whsec_ + base64, not empty)
    raw_key = base64.b64decode(value.removeprefix("whsec_") + "==")  # as Webhook.__init__ decodes it
    return hmac.new(raw_key, digestmod=hashlib.sha256)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


async def _read_excerpt(resp: aiohttp.ClientResponse) -> bytes:
    """The first EXCERPT_BYTES of an aiohttp answer (the Alertmanager channel's); the rest is not read."""
    buf = bytearray()
    while len(buf) < EXCERPT_BYTES:
        chunk = await resp.content.read(EXCERPT_BYTES - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)
