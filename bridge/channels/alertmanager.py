"""Alertmanager channel: firing and resolved events become alerts on Alertmanager's v2 API.

Teams that route through Prometheus Alertmanager keep their receivers, grouping, inhibitions and
silences: each event is POSTed to `/api/v2/alerts` as one alert whose labels (rule, source,
provider, resource, severity, type and the channel's own) identify it, so the resolved event of a
rule ends the very alert its firing started. Alertmanager wants an end time: a firing alert ends at
`startsAt + resolve_timeout` unless its rule resolves it first (or a reminder re-sends it).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import structlog

from bridge import __version__
from bridge.channels.base import RenderContext, SendResult
from bridge.channels.email import default_subject, default_text, with_links
from bridge.channels.webhook import _read_excerpt, iso_z
from bridge.clock import Clock
from bridge.config.models import AlertmanagerChannelConfig, Config
from bridge.config.models import ChannelConfig as AnyChannelConfig
from bridge.model import Delivery, Event
from bridge.notify.render import template_context
from bridge.providers.http import parse_retry_after
from bridge.rules.templates import ENV

log = structlog.get_logger(__name__)

ALERTS_PATH = "/api/v2/alerts"
MAX_ANNOTATION = 8 * 1024  # Alertmanager keeps annotations in memory; a page of text is plenty


def alert_labels(event: Event, extra: dict[str, str]) -> dict[str, str]:
    """What identifies the alert (its fingerprint): the same for a rule's firing and resolution."""
    return {
        **extra,
        "alertname": event.rule_id,
        "rule": event.rule_id,
        "type": event.type,
        "source": event.key.source,
        "provider": event.key.provider,
        "resource": event.key.resource_id,
        "severity": event.severity,
    }


class AlertmanagerChannel:
    """POSTs one alert per delivery to one Alertmanager (or a cluster member's load balancer)."""

    kind: str = "alertmanager"

    def __init__(
        self,
        name: str,
        cfg: AlertmanagerChannelConfig,
        *,
        session: aiohttp.ClientSession,
        clock: Clock,
        listen: str = "127.0.0.1:8080",
    ) -> None:
        self.name = name
        self._cfg = cfg
        self._session = session
        self._clock = clock
        self._endpoint = cfg.url + ALERTS_PATH
        self._generator = ENV.from_string(cfg.generator_url) if cfg.generator_url is not None else None
        self._default_generator = f"http://{listen}/"
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout.total_seconds())
        headers = {"content-type": "application/json", "user-agent": f"Wattbridge/{__version__}"}
        if cfg.bearer_token is not None:
            headers["authorization"] = f"Bearer {cfg.bearer_token.get_secret_value()}"
        self._headers = headers
        self._auth = (
            aiohttp.BasicAuth(cfg.username, cfg.password.get_secret_value())
            if cfg.username is not None and cfg.password is not None
            else None
        )

    @classmethod
    def from_config(
        cls,
        name: str,
        cfg: AnyChannelConfig,
        *,
        config: Config,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> AlertmanagerChannel:
        if not isinstance(cfg, AlertmanagerChannelConfig):
            raise TypeError(
                f"channels.{name}: expected an alertmanager channel config, got kind {cfg.kind!r}"
            )
        return cls(name, cfg, session=session, clock=clock, listen=config.server.listen)

    def render(self, event: Event, ctx: RenderContext) -> bytes:
        return orjson.dumps([self.alert(event, ctx)])

    def alert(self, event: Event, ctx: RenderContext) -> dict[str, Any]:
        """The postableAlert of one event (Alertmanager OpenAPI: labels, annotations, times, link)."""
        starts: datetime = event.occurred_at
        # Firing: open-ended alerts auto-resolve after Alertmanager's resolve_timeout (5m by
        # default), so we say how long it lasts. Resolved: it ended when the rule said so.
        ends = starts if event.status == "resolved" else starts + self._cfg.resolve_timeout
        summary = ctx.email_subject or default_subject(event)
        description = with_links(
            ctx.email_body if ctx.email_body is not None else default_text(event, ctx), ctx
        )
        links = {"acknowledge_url": ctx.links["acknowledge"]} if ctx.links else {}
        return {
            "labels": alert_labels(event, self._cfg.labels),
            "annotations": {
                "summary": summary[:MAX_ANNOTATION],
                "description": description[:MAX_ANNOTATION],
                "event_id": event.id,
                "sequence": str(event.sequence),
                "status": event.status,
                **links,
            },
            "startsAt": iso_z(starts),
            "endsAt": iso_z(ends),
            "generatorURL": self._generator_url(event, ctx),
        }

    def _generator_url(self, event: Event, ctx: RenderContext) -> str:
        if self._generator is None:
            return self._default_generator
        try:
            return self._generator.render(**template_context(event, ctx.old))
        except Exception as exc:  # the alert still goes out, linking to the status page
            log.warning("alertmanager.generator_url_failed", channel=self.name, error=str(exc))
            return self._default_generator

    async def send(self, delivery: Delivery) -> SendResult:
        started = time.perf_counter()
        try:
            async with self._session.post(
                self._endpoint,
                data=delivery.body,
                headers=self._headers,
                auth=self._auth,
                allow_redirects=False,
                timeout=self._timeout,
            ) as resp:
                excerpt = (await _read_excerpt(resp)).decode("utf-8", errors="replace")
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            return SendResult(
                ok=False, error=f"timeout after {self._timeout.total:g}s", latency_ms=_ms(started)
            )
        except aiohttp.ClientError as exc:
            return SendResult(
                ok=False, error=f"connection error: {type(exc).__name__}: {exc}", latency_ms=_ms(started)
            )
        except Exception as exc:  # never raise: the outbox must record and retry whatever happened
            log.exception("alertmanager.unexpected_error", channel=self.name, delivery_id=delivery.id)
            return SendResult(
                ok=False, error=f"unexpected error: {type(exc).__name__}", latency_ms=_ms(started)
            )
        return self._classify(status, retry_after, excerpt, _ms(started))

    def _classify(self, status: int, retry_after: str | None, excerpt: str, ms: float) -> SendResult:
        common: dict[str, Any] = {"status_code": status, "latency_ms": ms, "response_excerpt": excerpt}
        if 200 <= status < 300:
            return SendResult(ok=True, **common)
        if status in (400, 422):
            # Alertmanager validated the alert and said no (bad label name, ends before start):
            # resending the same bytes cannot help.
            return SendResult(ok=False, permanent=True, error=f"HTTP {status}: alert rejected", **common)
        if status in (408, 429) or status >= 500:
            return SendResult(
                ok=False,
                retry_after=parse_retry_after(retry_after, now=self._clock.now()),
                error=f"HTTP {status}",
                **common,
            )
        # 3xx, 401, 403, 404, 405: the channel's url or credentials are wrong. An operator fixes
        # them; meanwhile alerts are retried on the schedule (the breaker pauses the channel)
        # instead of being dead-lettered at the first answer.
        return SendResult(ok=False, error=f"HTTP {status}: check the channel's url and credentials", **common)

    async def close(self) -> None:
        """The session belongs to the app; nothing of our own to release."""


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
