"""Apprise channel: one Apprise service URL (Slack, Teams, Telegram, ntfy, …) per channel.

Title and body are rendered once (the rule's `[rule.email]` texts, or the email defaults) and stored
in the outbox. Apprise is synchronous, so each send runs on the channel's own small thread pool,
never on the event loop. Its URLs carry tokens: the URL and every private part Apprise knows of
(passwords, bot tokens, webhook path tokens) are registered with the log scrubber, and only Apprise's
privacy form of the URL (`tgram://1...Z/…`) is ever shown. Apprise's own log lines are kept off the
root logger and come back scrubbed, as the attempt's error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp
import apprise
import orjson
import structlog
from pydantic import SecretStr

from bridge.channels.base import RenderContext, SendResult
from bridge.channels.email import default_subject, default_text, with_links
from bridge.clock import Clock
from bridge.config.models import AppriseChannelConfig, Config
from bridge.config.models import ChannelConfig as AnyChannelConfig
from bridge.logs import register_secrets, scrub
from bridge.model import Delivery, Event

log = structlog.get_logger(__name__)

EXCERPT_CHARS = 256
SEND_THREADS = 4  # sends of one channel in flight at once; more wait for a thread
# Apprise logs through stdlib logging; with no handler of ours its warnings would reach stderr
# unscrubbed (logging's last-resort handler). Each call's lines come back in its result instead.
logging.getLogger(apprise.LOGGER_NAME).propagate = False
logging.getLogger(apprise.LOGGER_NAME).addHandler(logging.NullHandler())


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use `url`, naming only its scheme (the rest may be a token), or None."""
    scheme = url.partition("://")[0] if "://" in url else ""
    if not scheme:
        return "expected an Apprise URL like 'tgram://bottoken/chat_id' (see the Apprise wiki)"
    if apprise.Apprise.instantiate(url) is None:
        return f"Apprise cannot use this {scheme}:// URL (unknown service, or a part is missing or invalid)"
    return None


def secret_parts(url: str) -> list[str]:
    """The URL and its private parts, as Apprise's service plugin marks them (`private: True`)."""
    parts = [url]
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return parts
    specs: dict[str, dict[str, Any]] = {**plugin.template_tokens, **plugin.template_args}
    for name, spec in specs.items():
        if not spec.get("private"):
            continue
        value = getattr(plugin, spec.get("map_to", name), None)
        values = value if isinstance(value, list | tuple | set) else [value]
        parts += [v for v in values if isinstance(v, str) and len(v) >= 4]
    password = getattr(plugin, "password", None)
    if isinstance(password, str) and password:
        parts.append(password)
    return parts


def redacted_url(url: str) -> str:
    """Apprise's privacy form of the URL (`json://user:****@host/…`): safe to log and show."""
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return url.partition("://")[0] + "://****"
    shown: str = plugin.url(privacy=True)  # type: ignore[no-untyped-call]  # untyped in Apprise
    return shown


def notify_type(event: Event) -> str:
    """Apprise's colour/icon: a resolution is good news; otherwise by the rule's severity."""
    if event.status == "resolved":
        return apprise.NotifyType.SUCCESS.value
    return {
        "critical": apprise.NotifyType.FAILURE.value,
        "warning": apprise.NotifyType.WARNING.value,
    }.get(event.severity, apprise.NotifyType.INFO.value)


class AppriseChannel:
    """Sends one notification per delivery to one Apprise service."""

    kind: str = "apprise"

    def __init__(self, name: str, cfg: AppriseChannelConfig, *, clock: Clock) -> None:
        self.name = name
        self._cfg = cfg
        self._clock = clock
        url = cfg.url.get_secret_value()
        register_secrets(SecretStr(part) for part in secret_parts(url))
        self.display_url = redacted_url(url)
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def from_config(
        cls,
        name: str,
        cfg: AnyChannelConfig,
        *,
        config: Config,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> AppriseChannel:
        if not isinstance(cfg, AppriseChannelConfig):
            raise TypeError(f"channels.{name}: expected an apprise channel config, got kind {cfg.kind!r}")
        return cls(name, cfg, clock=clock)

    def render(self, event: Event, ctx: RenderContext) -> bytes:
        stored = {
            "title": ctx.email_subject or default_subject(event),
            "body": with_links(
                ctx.email_body if ctx.email_body is not None else default_text(event, ctx), ctx
            ),
            "type": notify_type(event),
        }
        return orjson.dumps(stored)

    async def send(self, delivery: Delivery) -> SendResult:
        started = time.perf_counter()
        try:
            stored = orjson.loads(delivery.body)
            title, body, kind = str(stored["title"]), str(stored["body"]), str(stored["type"])
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            return SendResult(
                ok=False, permanent=True, error=f"stored apprise body is malformed: {type(exc).__name__}"
            )
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix=f"apprise:{self.name}")
        loop = asyncio.get_running_loop()
        try:
            ok, status, lines = await loop.run_in_executor(self._pool, self._notify, title, body, kind)
        except Exception as exc:  # never raise: the outbox must record and retry whatever happened
            log.warning("apprise.unexpected_error", channel=self.name, error=scrub(str(exc)))
            return SendResult(
                ok=False, error=f"unexpected error: {type(exc).__name__}", latency_ms=_ms(started)
            )
        excerpt = scrub(" | ".join(lines))[:EXCERPT_CHARS] or None
        if ok:
            return SendResult(ok=True, latency_ms=_ms(started), response_excerpt=excerpt)
        if status == "nomatch":
            # Apprise loaded no service from the URL: nothing will change until the config does.
            return SendResult(ok=False, permanent=True, error=f"apprise: no service for {self.display_url}")
        # Apprise reports failure without telling a dead token from a flaky network: retry, and
        # the schedule's end turns a lasting failure into a dead letter (replayable).
        return SendResult(
            ok=False,
            error=f"apprise: {status} sending to {self.display_url}",
            latency_ms=_ms(started),
            response_excerpt=excerpt,
        )

    def _notify(self, title: str, body: str, kind: str) -> tuple[bool, str, list[str]]:
        """One Apprise call, on a pool thread; a fresh Apprise object per call (they hold state)."""
        client = apprise.Apprise()
        if not client.add(self._cfg.url.get_secret_value()):
            return False, "nomatch", []
        result = client.notify(
            body=body, title=title, notify_type=kind, timeout=self._cfg.timeout.total_seconds()
        )
        with result:
            status = result.status.name.lower()
            lines = [entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR")]
            return bool(result), status, lines

    async def close(self) -> None:
        """Wait for sends on the pool's threads to finish (they are bounded by the timeout)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, pool.shutdown)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
