"""Email channel: renders subject and text once, sends them over SMTP with aiosmtplib.

The Message-ID is derived from the delivery id, so every retry or replay of one notification is the
same message to a mail client (duplicates collapse). SMTP replies are classified like HTTP ones:
4xx and connection trouble are retried, 5xx is permanent.
"""

from __future__ import annotations

import email.utils
import time
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
import orjson
import structlog

from bridge.channels.base import RenderContext, SendResult
from bridge.channels.webhook import iso_z
from bridge.clock import Clock
from bridge.config.models import ChannelConfig as AnyChannelConfig
from bridge.config.models import Config, EmailChannelConfig, SmtpConfig
from bridge.model import Delivery, Event
from bridge.notify.links import link_html, link_lines

log = structlog.get_logger(__name__)

EXCERPT_CHARS = 256
# Replies about the session, not the message (RFC 4954, 3207): TLS or authentication required,
# credentials refused. They mean our [smtp] settings are wrong, which an operator fixes; the message
# stays pending (and the breaker pauses the channel) instead of being dead-lettered as undeliverable.
SESSION_REFUSALS = frozenset({530, 534, 535, 538})


def default_subject(event: Event) -> str:
    return f"{event.type} {event.status}: {event.key}"


def default_text(event: Event, ctx: RenderContext) -> str:
    """A plain summary for rules without their own [rule.email] body: what changed, where, when."""
    lines = [
        f"Rule:      {event.rule_id} ({event.status}, severity {event.severity})",
        f"Resource:  {event.key.source} {event.key.resource_id} (provider {event.key.provider})",
        f"Sequence:  {event.sequence}",
        f"Occurred:  {iso_z(event.occurred_at)}",
        f"Event id:  {event.id}",
    ]
    if ctx.rule_description:
        lines += ["", ctx.rule_description]
    if event.changes:
        lines += ["", "Changes:"]
        lines += [f"  {c.field}: {_show(c.old)} -> {_show(c.new)}" for c in event.changes]
    return "\n".join(lines) + "\n"


def with_links(text: str, ctx: RenderContext) -> str:
    """A notification's text with its escalation step and acknowledge / snooze links (#14) below."""
    extra = link_lines(ctx.links)
    if ctx.escalation:
        extra = ["", f"Escalated (step {ctx.escalation}): nobody acknowledged it in time.", *extra[:]]
    if not extra:
        return text
    return text.rstrip("\n") + "\n" + "\n".join(extra) + "\n"


def _show(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


class EmailChannel:
    """Sends one email per delivery through the configured SMTP relay."""

    kind: str = "email"

    def __init__(self, name: str, cfg: EmailChannelConfig, smtp: SmtpConfig, *, clock: Clock) -> None:
        self.name = name
        self._cfg = cfg
        self._smtp = smtp
        self._clock = clock

    @classmethod
    def from_config(
        cls,
        name: str,
        cfg: AnyChannelConfig,
        *,
        config: Config,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> EmailChannel:
        if not isinstance(cfg, EmailChannelConfig):
            raise TypeError(f"channels.{name}: expected an email channel config, got kind {cfg.kind!r}")
        return cls(name, cfg, config.smtp, clock=clock)

    def render(self, event: Event, ctx: RenderContext) -> bytes:
        stored: dict[str, Any] = {
            "subject": ctx.email_subject or default_subject(event),
            "text": with_links(
                ctx.email_body if ctx.email_body is not None else default_text(event, ctx), ctx
            ),
            "to": list(self._cfg.to),
        }
        if ctx.email_html is not None:
            stored["html"] = ctx.email_html + link_html(ctx.links)
        return orjson.dumps(stored)

    def message(self, delivery: Delivery) -> EmailMessage:
        """The email for one attempt; raises ValueError when the stored body is not ours."""
        try:
            body = orjson.loads(delivery.body)
            subject, text, to = str(body["subject"]), str(body["text"]), [str(a) for a in body["to"]]
            markup = body.get("html")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"stored email body is malformed: {type(exc).__name__}") from exc
        msg = EmailMessage()
        msg["From"] = self._cfg.from_
        msg["To"] = ", ".join(to)
        # Header values must stay on one line; a template may have produced a newline.
        msg["Subject"] = " ".join(f"{self._cfg.subject_prefix}{subject}".split())
        msg["Message-ID"] = f"<{delivery.id}@wattbridge>"
        msg["Date"] = email.utils.format_datetime(self._clock.now())
        msg.set_content(text)
        if markup is not None:
            # multipart/alternative: clients that cannot show HTML fall back to the text part.
            msg.add_alternative(str(markup), subtype="html")
        return msg

    async def send(self, delivery: Delivery) -> SendResult:
        started = time.perf_counter()
        try:
            msg = self.message(delivery)
        except ValueError as exc:
            return SendResult(ok=False, permanent=True, error=str(exc))
        smtp = self._smtp
        try:
            refused, reply = await aiosmtplib.send(
                msg,
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password.get_secret_value() if smtp.password else None,
                use_tls=smtp.use_tls,
                start_tls=smtp.starttls and not smtp.use_tls,
                cert_bundle=smtp.ca_file,
                timeout=smtp.timeout.total_seconds(),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            return SendResult(
                ok=False,
                status_code=codes[0] if codes else None,
                permanent=all(code >= 500 for code in codes),
                error=f"SMTP: every recipient refused ({', '.join(map(str, codes))})",
                latency_ms=_ms(started),
                response_excerpt="; ".join(r.message for r in exc.recipients)[:EXCERPT_CHARS],
            )
        except aiosmtplib.SMTPResponseException as exc:
            session = exc.code in SESSION_REFUSALS
            hint = ": the relay refused the session; check [smtp] starttls/use_tls/username/password"
            return SendResult(
                ok=False,
                status_code=exc.code,
                permanent=exc.code >= 500 and not session,
                error=f"SMTP {exc.code} ({type(exc).__name__}){hint if session else ''}",
                latency_ms=_ms(started),
                response_excerpt=exc.message[:EXCERPT_CHARS],
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            # Timeouts, refused or dropped connections, TLS trouble: the relay may be back later.
            return SendResult(ok=False, error=f"SMTP: {type(exc).__name__}: {exc}", latency_ms=_ms(started))
        except Exception as exc:  # never raise: the outbox must record and retry whatever happened
            log.exception("email.unexpected_error", channel=self.name, delivery_id=delivery.id)
            return SendResult(
                ok=False, error=f"unexpected error: {type(exc).__name__}", latency_ms=_ms(started)
            )
        return SendResult(
            ok=True,
            status_code=250,
            error=f"SMTP: {len(refused)} recipient(s) refused" if refused else None,
            latency_ms=_ms(started),
            response_excerpt=reply[:EXCERPT_CHARS],
        )

    async def close(self) -> None:
        """One SMTP connection per send; nothing kept open."""


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
